//! The Khronos validation layer runs under every GPU test (`common::gpu` asks for it),
//! and what it reports fails the test that caused it: here a deliberate misuse, a
//! Vulkan buffer of size 0 made below wgpu (whose own checks would stop it first),
//! must come back as an error from `Gpu::check` naming the rule it broke. Where the
//! layer is missing or its messages are lost, this test fails.

mod common;

use ash::vk;

#[test]
fn the_layer_reports_a_deliberate_misuse() {
    let gpu = common::gpu();
    assert!(elbo::gpu::validation::requested(), "the tests did not ask for the validation layer");
    assert!(
        gpu.info.backend == wgpu::Backend::Vulkan,
        "the layer is checked on Vulkan; this adapter is {}",
        gpu.adapter_line()
    );
    gpu.check().expect("no message before the misuse");

    // SAFETY: a raw buffer is made and destroyed on the device's own handle; nothing of
    // wgpu's refers to it. Its size, 0, breaks VUID-VkBufferCreateInfo-size-00912: that
    // is the misuse, which lavapipe accepts and the layer reports.
    unsafe {
        let hal = gpu.device.as_hal::<wgpu::hal::api::Vulkan>().expect("a Vulkan device");
        let raw = hal.raw_device();
        let info = vk::BufferCreateInfo::default().size(0).usage(vk::BufferUsageFlags::STORAGE_BUFFER);
        if let Ok(buffer) = raw.create_buffer(&info, None) {
            raw.destroy_buffer(buffer, None);
        }
    }
    let err = gpu.check().expect_err("the layer reported nothing for a buffer of size 0");
    let text = format!("{err:#}");
    assert!(
        text.contains("validation layer") && text.contains("VUID-VkBufferCreateInfo-size-00912"),
        "the error does not name the layer's rule:\n{text}"
    );
    // the messages were taken: the next check is clean
    gpu.check().expect("the misuse's messages were reported once");
}
