//! Every shader against the Rust side of the contract (`gpu::shaders`), on the CPU: naga parses
//! and validates the source of each pipeline the backend can create, applies the pipeline's
//! overridable constants as wgpu does, and the test checks
//! * every constant Rust sets exists and every override the entry point uses is set;
//! * the entry point's workgroup size is the one the dispatch formulas assume, within WebGPU's
//!   default limits (256 invocations, 16 KiB of workgroup memory);
//! * the bindings it uses are exactly those Rust binds (group 0, index, name, access);
//! * its uniform struct has the Rust struct's size and field offsets;
//! * the named constants the host relies on (activation codes, the register block) agree.
//!
//! Then it translates each pipeline for every platform wgpu serves: SPIR-V (Vulkan), MSL
//! (Metal), HLSL (DX12) and GLSL ES 3.1 compute (OpenGL), so a Metal or DX12 user never meets a
//! translation error first.

use std::collections::HashMap;

use gpu_mnist::gpu::shaders::{self, Access, Binding, PipelineSpec, SHADER_CONSTANTS};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ShaderStage, StorageAccess, TypeInner};

/// WebGPU's default `maxComputeInvocationsPerWorkgroup` and `maxComputeWorkgroupStorageSize`.
const MAX_INVOCATIONS: u32 = 256;
const MAX_WORKGROUP_BYTES: u32 = 16 << 10;

fn validate(module: &Module, what: &str) -> ModuleInfo {
    Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(module)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string("")))
}

/// The pipeline's module as wgpu compiles it: parsed, validated, its overrides replaced by the
/// pipeline's constants and everything but the entry point dropped.
fn compiled(spec: &PipelineSpec) -> (Module, ModuleInfo) {
    let what = format!("{} ({})", spec.entry, spec.files);
    let module = naga::front::wgsl::parse_str(&spec.source)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&spec.source)));
    let info = validate(&module, &what);
    let constants: naga::back::PipelineConstants = spec.constants.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((ShaderStage::Compute, spec.entry)),
        &constants,
    )
    .unwrap_or_else(|e| panic!("{what}: the constants {:?}: {e}", spec.constants));
    (module.into_owned(), info.into_owned())
}

#[test]
fn every_pipeline_matches_its_rust_declaration() {
    let all = shaders::all();
    // Every entry point of every shader has a pipeline, and every pipeline an entry point.
    let mut found = std::collections::BTreeSet::new();
    for spec in &all {
        let module = naga::front::wgsl::parse_str(&spec.source).expect("parses");
        found.extend(module.entry_points.iter().map(|e| e.name.clone()));
    }
    let declared: std::collections::BTreeSet<String> = all.iter().map(|s| s.entry.to_string()).collect();
    assert_eq!(found, declared, "the shaders' entry points and the pipelines Rust declares");
    for spec in &all {
        let what = format!("{} ({})", spec.entry, spec.files);
        let (module, info) = compiled(spec);
        let [ep] = &module.entry_points[..] else { panic!("{what}: the entry point is missing") };
        assert_eq!((ep.name.as_str(), ep.stage), (spec.entry, ShaderStage::Compute), "{what}");
        assert_eq!(ep.workgroup_size, spec.workgroup_size, "{what}: workgroup size");
        assert!(spec.workgroup_size.iter().product::<u32>() <= MAX_INVOCATIONS, "{what}: too many invocations");

        // The bindings the entry point uses, and the workgroup memory it declares.
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layouts");
        let uses = info.get_entry_point(0);
        let (mut bound, mut workgroup_bytes, mut uniform) = (Vec::new(), 0, None);
        for (handle, var) in module.global_variables.iter() {
            if uses[handle].is_empty() {
                continue;
            }
            if var.space == AddressSpace::WorkGroup {
                workgroup_bytes += layouter[var.ty].size;
            }
            let Some(rb) = &var.binding else { continue };
            let access = match var.space {
                AddressSpace::Uniform => Access::Uniform,
                AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => Access::ReadWrite,
                AddressSpace::Storage { .. } => Access::Read,
                other => panic!("{what}: binding {} in {other:?}", rb.binding),
            };
            assert_eq!(rb.group, 0, "{what}: every binding is in group 0");
            let name = var.name.clone().unwrap_or_default();
            bound.push((rb.binding, name, access));
            if access == Access::Uniform {
                uniform = Some(var.ty);
            }
        }
        bound.sort_by_key(|b| b.0);
        let want: Vec<_> =
            spec.bindings.iter().map(|&Binding { index, name, access }| (index, name.to_string(), access)).collect();
        assert_eq!(bound, want, "{what}: bindings (index, name, access)");
        assert!(workgroup_bytes <= MAX_WORKGROUP_BYTES, "{what}: {workgroup_bytes} bytes of workgroup memory");
        // What the tuner checks against the device's limit before it builds a candidate.
        assert_eq!(workgroup_bytes, spec.workgroup_bytes, "{what}: workgroup memory the host declares");

        // The uniform: the Rust struct's size, and its fields at the same offsets.
        let ty = uniform.unwrap_or_else(|| panic!("{what}: no uniform binding"));
        let TypeInner::Struct { members, span } = &module.types[ty].inner else {
            panic!("{what}: the uniform is a struct")
        };
        let u = spec.uniform;
        assert_eq!(
            *span as usize,
            u.size,
            "{what}: size of {} (the Rust side {})",
            module.types[ty].name.as_deref().unwrap_or("?"),
            u.name
        );
        let fields: Vec<(&str, usize)> = members
            .iter()
            .filter_map(|m| m.name.as_deref().filter(|n| !n.starts_with("_pad")).map(|n| (n, m.offset as usize)))
            .collect();
        assert_eq!(fields, u.fields, "{what}: fields and offsets of {}", u.name);
    }
}

#[test]
fn named_constants_agree_with_the_host() {
    let files: HashMap<&str, &str> = [
        ("matmul.wgsl", shaders::MATMUL_WGSL),
        ("softmax_xent.wgsl", shaders::SOFTMAX_XENT_WGSL),
        ("column_sum.wgsl", shaders::COLUMN_SUM_WGSL),
        ("optimizer_update.wgsl", shaders::OPTIMIZER_UPDATE_WGSL),
    ]
    .into();
    for (file, name, value) in SHADER_CONSTANTS {
        let module = naga::front::wgsl::parse_str(files[file]).expect(file);
        let c = module.constants.iter().map(|(_, c)| c).find(|c| c.name.as_deref() == Some(name));
        let c = c.unwrap_or_else(|| panic!("{file} declares no const {name}"));
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => assert_eq!(v, value, "{file}: {name}"),
            ref other => panic!("{file}: {name} is {other:?}, expected a u32 literal"),
        }
    }
}

#[test]
fn every_pipeline_translates_for_every_platform() {
    for spec in shaders::all() {
        let what = format!("{} ({})", spec.entry, spec.files);
        let (module, info) = compiled(&spec);
        let entry = spec.entry.to_string();

        let spv = naga::back::spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.clone() };
        let words = naga::back::spv::write_vec(&module, &info, &Default::default(), Some(&spv))
            .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
        assert_eq!(words.first(), Some(&0x0723_0203), "{what}: the SPIR-V magic number");

        let msl = naga::back::msl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, entry.clone())),
            ..Default::default()
        };
        let (text, _) = naga::back::msl::write_string(&module, &info, &Default::default(), &msl)
            .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
        assert!(text.contains("kernel void"), "{what}: MSL has a kernel");

        let hlsl_pipeline =
            naga::back::hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.clone())) };
        let hlsl_options = naga::back::hlsl::Options::default();
        let mut text = String::new();
        naga::back::hlsl::Writer::new(&mut text, &hlsl_options, &hlsl_pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
        assert!(text.contains("[numthreads("), "{what}: HLSL has a compute entry point");

        let glsl = naga::back::glsl::PipelineOptions {
            shader_stage: ShaderStage::Compute,
            entry_point: entry,
            multiview: None,
        };
        let options = naga::back::glsl::Options::default();
        let mut text = String::new();
        naga::back::glsl::Writer::new(&mut text, &module, &info, &options, &glsl, Default::default())
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{what}: GLSL: {e}"));
        assert!(text.contains("layout(local_size_x"), "{what}: GLSL compute");
    }
}
