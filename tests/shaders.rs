//! Every shader parses and validates with naga, without a GPU, and every entry
//! point has a CPU reference of the same name under src/reference/.

use elbo::kernels::{with_common, SHADERS};

fn validate(name: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(&with_common(source))
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&with_common(source))));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}"));
    module
}

#[test]
fn every_shader_validates() {
    assert!(SHADERS.len() >= 7);
    let on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".wgsl")
                && ![
                    "common.wgsl",
                    "conv_common.wgsl",
                    "adam_common.wgsl",
                    "subgroup_common.wgsl",
                    "gemm_fused_subgroup.wgsl",
                    "gemm_adam_texels.wgsl",
                    "gemm_adam_buffers.wgsl",
                    "lanes8.wgsl",
                    "lanes16.wgsl",
                ]
                .contains(&n.as_str())
        })
        .collect();
    for file in &on_disk {
        assert!(SHADERS.iter().any(|(n, _)| n == file), "shaders/{file} is not listed in kernels::SHADERS");
    }
    for (name, source) in SHADERS {
        validate(name, source);
    }
}

#[test]
fn every_entry_point_has_a_reference() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/reference");
    let reference: String =
        std::fs::read_dir(dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(reference.contains("pub fn gemm_forward("), "no references read from {dir}");
    for (name, source) in SHADERS {
        let module = validate(name, source);
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
        for ep in &module.entry_points {
            let r = elbo::kernels::reference_name(&ep.name);
            assert!(
                reference.contains(&format!("pub fn {r}(")),
                "{name}: entry point {} has no `pub fn {r}` under src/reference/",
                ep.name
            );
        }
    }
}

#[test]
fn a_broken_shader_is_reported() {
    let result = naga::front::wgsl::parse_str(&with_common("fn broken( { }"));
    assert!(result.is_err(), "naga accepted invalid WGSL");
}

#[test]
fn named_binding_slots_match_the_wgsl() {
    use elbo::kernels::*;
    /// A kernel file's slots: (name in the WGSL, binding), in tables.
    type Slots<'a> = &'a [&'a [(&'a str, u32)]];
    let tables: &[(&str, Slots)] = &[
        ("gemm.wgsl", &[gemm_slot::ALL]),
        ("gemm_subgroup.wgsl", &[gemm_slot::ALL, gemm_fused_slot::ALL]),
        ("conv.wgsl", &[conv_slot::ALL]),
        ("conv_subgroup.wgsl", &[conv_slot::ALL]),
        ("gemm_adam_subgroup.wgsl", &[&gemm_slot::ALL[..3], gemm_adam_slot::ALL]),
        ("gemm_adam_buffers_subgroup.wgsl", &[&gemm_slot::ALL[..3], gemm_adam_slot::ALL]),
        ("elbo.wgsl", &[elbo_slot::ALL]),
        ("iwae.wgsl", &[elbo_slot::ALL, iwae_slot::ALL]),
        ("reparam.wgsl", &[reparam_slot::ALL]),
        ("activation.wgsl", &[activation_slot::ALL]),
        ("gather.wgsl", &[gather_slot::ALL]),
        ("adam.wgsl", &[adam_slot::ALL]),
        ("adam_texel.wgsl", &[adam_slot::ALL]),
        ("classify.wgsl", &[classify_slot::ALL]),
    ];
    let mut checked = 0;
    for (file, slots) in tables {
        let source = SHADERS.iter().find(|(n, _)| n == file).unwrap_or_else(|| panic!("no {file}")).1;
        let module = validate(file, source);
        let bound: Vec<(String, u32)> = module
            .global_variables
            .iter()
            .filter_map(|(_, v)| Some((v.name.clone()?, v.binding.as_ref()?.binding)))
            .collect();
        for &(name, slot) in slots.iter().flat_map(|t| t.iter()) {
            let found = bound.iter().find(|(n, _)| n == name).map(|b| b.1);
            assert_eq!(
                found,
                Some(slot),
                "{file}: `{name}` is bound at {found:?} in the WGSL, named slot {slot} in Rust"
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} slots checked");
}
