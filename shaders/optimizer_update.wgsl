// optimizer_update.wgsl: one optimizer step over all parameters at once (the twins of the CPU
// functions in src/optim.rs, one entry point per rule).
//
// Math, per element i < p.count, with g = grad[i]; first, on weights only (i < p.weights_end),
// the decoupled decay param[i] -= p.lr * p.weight_decay * param[i] (skipped when weight_decay is
// 0); then
//   gd_update:       param -= lr * g
//   momentum_update: m = momentum * m + g;  param -= lr * m
//   nesterov_update: m = momentum * m + g;  param -= lr * (g + momentum * m)
//   adam_update:     m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
//                    param -= lr * (m * c1) / (sqrt(v * c2) + eps)
// each new moment (m, v) below 2^-100 in magnitude stored as 0 (`floored`),
// where c1 = 1/(1 - beta1^t), c2 = 1/(1 - beta2^t) are step t's bias corrections, written into
// the uniform by the host before each step. The parameters live in one buffer, every layer's
// weights first (W1, W2, ..., ending at p.weights_end), then every layer's bias (b1, b2, ...),
// each tensor 256-byte aligned with zero padding between; gradients and moments share its layout.
// Padding and the biases of a bias-free model have zero gradients and moments, so every rule
// leaves them 0 (decay included: padding among the weights is 0 and stays 0).
//
// Bindings (group 0):
//   0 uniform p: Params
//   1 storage param: array<f32>, read_write. p.count values.
//   2 storage grad: array<f32>, read. p.count values.
//   3 storage m: array<f32>, read_write. p.count values (momentum's velocity, Adam's first
//     moment); used by momentum_update, nesterov_update and adam_update only.
//   4 storage v: array<f32>, read_write. p.count values (Adam's second moment); used by
//     adam_update only.
// Each entry point's bind group holds only the bindings it uses, so no buffer is bound twice.
//
// Invocation: element i = gid.x + gid.y * (WG * num_workgroups.x); a workgroup is WG invocations
// (a pipeline-overridable constant the host sets, shaders::WORKGROUP_1D = 256).
// Host dispatch: x = min(ceil(count / WG), 65535), y = ceil(ceil(count / WG) / x).
// Bounds: i >= p.count returns.

struct Params {
    count: u32,
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    c1: f32,
    c2: f32,
    weights_end: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

fn element(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * (WG * nwg.x);
}

// optim::MOMENT_FLOOR's bits, 2^-100: a new moment below it in magnitude is stored as 0, as on
// the CPU (a moment decaying through the subnormals makes a CPU slow; see src/optim.rs).
const MOMENT_FLOOR_BITS: u32 = 0x0d800000u;

fn floored(x: f32) -> f32 {
    return select(x, 0.0, abs(x) < bitcast<f32>(MOMENT_FLOOR_BITS));
}

// The parameter after the decoupled weight decay (only weights decay).
fn decayed(i: u32) -> f32 {
    let x = param[i];
    if (i < p.weights_end && p.weight_decay != 0.0) {
        return x - p.lr * p.weight_decay * x;
    }
    return x;
}

@compute @workgroup_size(WG)
fn gd_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.count) { return; }
    param[i] = decayed(i) - p.lr * grad[i];
}

@compute @workgroup_size(WG)
fn momentum_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.count) { return; }
    let mi = floored(p.momentum * m[i] + grad[i]);
    m[i] = mi;
    param[i] = decayed(i) - p.lr * mi;
}

@compute @workgroup_size(WG)
fn nesterov_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.count) { return; }
    let g = grad[i];
    let mi = floored(p.momentum * m[i] + g);
    m[i] = mi;
    param[i] = decayed(i) - p.lr * (g + p.momentum * mi);
}

@compute @workgroup_size(WG)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = element(gid, nwg);
    if (i >= p.count) { return; }
    let g = grad[i];
    let mi = floored(p.beta1 * m[i] + (1.0 - p.beta1) * g);
    let vi = floored(p.beta2 * v[i] + (1.0 - p.beta2) * g * g);
    m[i] = mi;
    v[i] = vi;
    param[i] = decayed(i) - p.lr * (mi * p.c1) / (sqrt(vi * p.c2) + p.eps);
}
