// column_sum.wgsl: sums over the rows of a matrix (bias gradients db = Σ_i dz_i, and the totals of
// the per-row loss/correct statistics).
//
// Math: out[j] (+)= Σ_{i < p.rows} m[(p.first_row + i) * p.cols + j]   (accumulate when
//       p.accumulate = 1): the sums over p.rows rows from row p.first_row (a mini-batch's rows
//       of the per-row statistics).
//
// Bindings (group 0):
//   0 uniform p: Params
//   1 storage m: array<f32>, read. At least p.first_row + p.rows rows of p.cols, row-major.
//   2 storage out: array<f32>, read_write. p.cols values.
//
// Invocation: workgroup j of WG invocations (a pipeline-overridable constant the host sets, a
// power of two: shaders::WORKGROUP_1D = 256) owns column j. Invocation t sums rows t, t+WG, ...
// then the workgroup adds its WG partial sums in a tree in workgroup memory (a fixed order, so
// results repeat exactly). Host dispatch: (p.cols, 1, 1); p.cols <= 65535.
// Bounds: the row loop stops at p.rows; every workgroup index is a valid column.

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    first_row: u32,
}

override WG: u32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn column_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let j = wg.x;
    var s = 0.0;
    for (var i = t; i < p.rows; i += WG) { s += m[(p.first_row + i) * p.cols + j]; }
    partial[t] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (t < stride) { partial[t] += partial[t + stride]; }
        workgroupBarrier();
    }
    if (t == 0u) {
        out[j] = select(partial[0], out[j] + partial[0], p.accumulate == 1u);
    }
}
