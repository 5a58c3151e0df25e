// sgd_update.wgsl: one step of plain gradient descent over all parameters at once.
//
// Math: param[i] -= p.lr * grad[i] for i < p.count. The parameters (W1, b1, W2, b2) live in one
// buffer and their gradients in another with the same layout, so one dispatch updates them all.
//
// Bindings (group 0):
//   0 uniform p: Params
//   1 storage param: array<f32>, read_write. p.count values.
//   2 storage grad: array<f32>, read. p.count values.
//
// Invocation: element i = gid.x + gid.y * (256 * num_workgroups.x). Workgroup 256.
// Host dispatch: x = min(ceil(count / 256), 65535), y = ceil(ceil(count / 256) / x).
// Bounds: i >= p.count returns.

struct Params {
    count: u32,
    lr: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;

@compute @workgroup_size(256)
fn sgd_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * (256u * nwg.x);
    if (i >= p.count) { return; }
    param[i] -= p.lr * grad[i];
}
