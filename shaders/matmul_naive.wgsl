// matmul_naive.wgsl: the two large products of a linear layer with one invocation per output,
// the textbook kernel. Training never uses it; `gpu-mnist bench --naive` times it beside the
// register-tiled kernels of matmul.wgsl to show what the tiling buys, and tests hold it to the
// CPU reference like every kernel.
//
// This file is compiled appended to matmul.wgsl: it uses that file's Params struct, its five
// bindings (same shapes, layouts and access), its a_word/b_f32 loads and activate().
//
// Math: linear_forward_naive          C = act(A·B + bias)   (A as stored M x K, u8 or f32)
//       linear_backward_weight_naive  C (+)= A^T·B           (A stored K x M)
// Invocation (gx, gy) computes C[gy][gx]; a workgroup is matmul.wgsl's WG_X x WG_Y, set by the
// host to 16 x 16 (shaders::NAIVE_SIDE).
// Host dispatch: (ceil(N / WG_X), ceil(M / WG_Y), 1). Bounds: invocations outside C return.

// Element (r, c) of A as stored (from row p.a_row0 of the binding).
fn a_elem(r: u32, c: u32) -> f32 {
    let i = (p.a_row0 + r) * p.lda + c;
    if (p.a_u8 == 1u) {
        return f32((a_word(i / 4u) >> (8u * (i % 4u))) & 0xffu) / 255.0;
    }
    return a_f32(i);
}

@compute @workgroup_size(WG_X, WG_Y)
fn linear_forward_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y; let col = gid.x;
    if (row >= p.m || col >= p.n) { return; }
    var z = 0.0;
    for (var k = 0u; k < p.k; k++) { z = fma(a_elem(row, k), b_f32(k * p.ldb + col), z); }
    if (p.bias == 1u) { z += aux[col]; }
    c[row * p.n + col] = activate(z, p.act);
}

@compute @workgroup_size(WG_X, WG_Y)
fn linear_backward_weight_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y; let col = gid.x;
    if (row >= p.m || col >= p.n) { return; }
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) { s = fma(a_elem(k, row), b_f32(k * p.ldb + col), s); }
    let idx = row * p.n + col;
    c[idx] = select(s, c[idx] + s, p.accumulate == 1u);
}
