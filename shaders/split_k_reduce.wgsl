// split_k_reduce.wgsl: the second pass of a split weight-gradient product (matmul.wgsl's
// linear_backward_weight over S slices of the rows): the slots' sum, in a fixed order, so that
// the result is the same on every run (no atomics).
//
// Math: c[i] (+)= Σ_{s = 0 .. p.splits-1} partial[s p.count + i] for i < p.count, summed from
//       s = 0 up, then added to c[i] when p.accumulate = 1 (a chunk after the first).
//
// Bindings (group 0):
//   0 uniform p: Params
//   1 storage partial: array<f32>, read. p.splits slots of p.count values, one after another.
//   2 storage c: array<f32>, read_write. p.count values: the weight gradient, M x N row-major.
//
// Invocation: element i = gid.x + gid.y * (WG * num_workgroups.x); a workgroup is WG invocations
// (a pipeline-overridable constant the host sets, shaders::WORKGROUP_1D = 256).
// Host dispatch: x = min(ceil(count / WG), 65535), y = ceil(ceil(count / WG) / x).
// Bounds: i >= p.count returns.

struct Params {
    count: u32,
    splits: u32,
    accumulate: u32,
    _pad0: u32,
}

override WG: u32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG)
fn split_k_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * (WG * nwg.x);
    if (i >= p.count) { return; }
    var s = partial[i];
    for (var slot = 1u; slot < p.splits; slot++) { s += partial[slot * p.count + i]; }
    c[i] = select(s, c[i] + s, p.accumulate == 1u);
}
