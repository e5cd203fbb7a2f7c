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
