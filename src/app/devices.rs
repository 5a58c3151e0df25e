//! `gpu-mnist devices`: the adapters wgpu sees and the limits that matter here.

use anyhow::Result;

use gpu_mnist::gpu::context;

pub fn run() -> Result<()> {
    let adapters = context::adapters();
    if adapters.is_empty() {
        println!(
            "wgpu sees no adapters: no Vulkan/Metal/DX12 driver is installed (on Debian: apt-get install mesa-vulkan-drivers for the software one), or {} is set",
            context::HIDE_ADAPTERS_ENV
        );
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        let (info, l) = (a.get_info(), a.limits());
        let kind = if context::is_hardware(&info) {
            "hardware"
        } else {
            "software: --backend auto skips it, --backend gpu uses it"
        };
        println!("{i}: {} ({kind})", context::describe(&info));
        println!("   driver: {} {}", info.driver, info.driver_info);
        println!(
            "   max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        );
        println!(
            "   max_compute_workgroup_storage_size {} KiB, max_compute_invocations_per_workgroup {}, max_compute_workgroups_per_dimension {}",
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        );
    }
    match adapters.iter().find(|a| context::is_hardware(&a.get_info())) {
        Some(a) => println!("--backend auto uses: {}", context::describe(&a.get_info())),
        None => println!("--backend auto uses: the CPU (no hardware adapter)"),
    }
    Ok(())
}
