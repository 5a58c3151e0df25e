// softmax_xent.wgsl: row softmax with cross-entropy loss, and its gradient w.r.t. the logits.
//
// Math, for row i of a chunk (global row g = p.row_offset + i, label y = labels[g]):
//   zmax = max_j z_ij, s = Σ_j exp(z_ij - zmax), prob_ij = exp(z_ij - zmax) / s
//   softmax_xent_forward : loss_g = log(s) + zmax - z_iy (stable for any logits),
//                          correct_g = 1 if the first arg-max of row i equals y, else 0
//   softmax_xent_backward: dz_ij = p.scale * (prob_ij - [j == y])    (scale = 1/N for the mean loss)
//
// Bindings (group 0):
//   0 uniform p: Params
//   1 storage logits: array<f32>, read. This chunk's logits, p.n x p.k, row-major.
//   2 storage labels: array<u32>, read. Labels of the whole split, one per word, indexed by g.
//   3 storage out: array<f32>, read_write.
//       forward : row statistics of the whole split, 2 per row: out[2g] = loss, out[2g+1] = correct.
//       backward: dz for this chunk, p.n x p.k, row-major.
//
// Invocation i (global x) handles row i; a workgroup is WG invocations (a pipeline-overridable
// constant the host sets, shaders::WORKGROUP_1D = 256). Host dispatch: (ceil(p.n / WG), 1, 1).
// Bounds: invocations with i >= p.n return at once.

struct Params {
    n: u32,
    k: u32,
    row_offset: u32,
    scale: f32,
}

override WG: u32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

struct RowSoftmax {
    zmax: f32,
    arg: u32,
    sum: f32,
}

fn row_softmax(i: u32) -> RowSoftmax {
    var r = RowSoftmax(logits[i * p.k], 0u, 0.0);
    for (var j = 1u; j < p.k; j++) {
        let z = logits[i * p.k + j];
        if (z > r.zmax) { r.zmax = z; r.arg = j; }
    }
    for (var j = 0u; j < p.k; j++) { r.sum += exp(logits[i * p.k + j] - r.zmax); }
    return r;
}

@compute @workgroup_size(WG)
fn softmax_xent_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n) { return; }
    let g = p.row_offset + i;
    let y = labels[g];
    let r = row_softmax(i);
    out[2u * g] = log(r.sum) + r.zmax - logits[i * p.k + y];
    out[2u * g + 1u] = select(0.0, 1.0, r.arg == y);
}

@compute @workgroup_size(WG)
fn softmax_xent_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n) { return; }
    let y = labels[p.row_offset + i];
    let r = row_softmax(i);
    for (var j = 0u; j < p.k; j++) {
        let prob = exp(logits[i * p.k + j] - r.zmax) / r.sum;
        out[i * p.k + j] = p.scale * (prob - select(0.0, 1.0, j == y));
    }
}
