// matmul.wgsl: the three products of a linear layer, register-tiled, with fused epilogues.
//
// Math. op(A) is M x K, op(B) is K x N, C is M x N; everything row-major in memory.
//   linear_forward          C = act(op(A)·op(B) + bias)   A = X (N x D) or A1, B = W; bias[N] if p.bias = 1
//   linear_backward_weight  C (+)= A^T · B                 A stored K x M (the layer input), B = dZ (K x N)
//   linear_backward_input   C = (A · B^T) ⊙ act'(aux)      A = dZ (M x K), B stored N x K (the weights),
//                                                          aux = the layer's input activations (M x N)
// act/act' use the codes 0 identity, 1 sigmoid, 2 relu, 3 elu; act' is written via a = act(z).
//
// Bindings (group 0):
//   0 uniform p: Params (below)
//   1 storage a: array<u32>, read. A as stored (M x K, or K x M for linear_backward_weight), row
//     stride p.lda elements. p.a_u8 = 0: f32 bit patterns. p.a_u8 = 1: bytes packed four per word
//     (little-endian), value byte/255; p.lda is then in bytes, a multiple of 4, and the padding
//     bytes of each row are 0.
//   2 storage b: array<f32>, read. B as stored (K x N, or N x K for linear_backward_input), stride p.ldb.
//   3 storage aux: array<f32>, read. linear_forward: bias[N]; linear_backward_input: act output
//     (M x N, stride N); otherwise unused (bind anything).
//   4 storage c: array<f32>, read_write. C, M x N, stride N.
//
// Invocation (gx, gy) of the global grid computes the 4 x 4 block of C at rows 4*gy.., cols 4*gx..;
// a 16 x 16 workgroup covers 64 x 64. Host dispatch: (ceil(N / 64), ceil(M / 64), 1).
// Bounds: loads outside A or B read 0 (u8 rows rely on their zero padding for k up to lda);
// stores outside C are skipped. No workgroup memory and no barriers: neighbouring invocations
// share loads through the cache (barriers are slow on software adapters such as lavapipe).

struct Params {
    m: u32, n: u32, k: u32,
    lda: u32, ldb: u32,
    a_u8: u32,        // 1: A holds packed bytes
    bias: u32,        // linear_forward: 1 adds aux[col]
    act: u32,         // activation code (see above)
    accumulate: u32,  // linear_backward_weight: 1 adds to C instead of overwriting it
    _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// Four consecutive elements of stored A, row r, columns col..col+3 (col % 4 == 0 for u8).
fn a_quad(r: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
    if (r >= rows) { return vec4<f32>(0.0); }
    if (p.a_u8 == 1u) { return unpack4x8unorm(a[(r * p.lda + col) / 4u]); }
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) {
        if (col + t < cols) { v[t] = bitcast<f32>(a[r * p.lda + col + t]); }
    }
    return v;
}

// Four consecutive elements of stored B, row r, columns col..col+3.
fn b_quad(r: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (r >= rows) { return v; }
    for (var t = 0u; t < 4u; t++) {
        if (col + t < cols) { v[t] = b[r * p.ldb + col + t]; }
    }
    return v;
}

// acc[i] = row i of the 4 x 4 block of op(A)·op(B) at (m0, n0).
fn tile(m0: u32, n0: u32, trans_a: bool, trans_b: bool) -> array<vec4<f32>, 4> {
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        // ak[j] = op(A)[m0..m0+4][k0+j]   (a column of the A block)
        var ak: mat4x4<f32>;
        if (trans_a) {
            for (var j = 0u; j < 4u; j++) { ak[j] = a_quad(k0 + j, m0, p.k, p.m); }
        } else {
            ak = transpose(mat4x4<f32>(a_quad(m0, k0, p.m, p.k), a_quad(m0 + 1u, k0, p.m, p.k),
                                       a_quad(m0 + 2u, k0, p.m, p.k), a_quad(m0 + 3u, k0, p.m, p.k)));
        }
        // bk[j] = op(B)[k0+j][n0..n0+4]   (a row of the B block)
        var bk: mat4x4<f32>;
        if (trans_b) {
            bk = transpose(mat4x4<f32>(b_quad(n0, k0, p.n, p.k), b_quad(n0 + 1u, k0, p.n, p.k),
                                       b_quad(n0 + 2u, k0, p.n, p.k), b_quad(n0 + 3u, k0, p.n, p.k)));
        } else {
            for (var j = 0u; j < 4u; j++) { bk[j] = b_quad(k0 + j, n0, p.k, p.n); }
        }
        for (var j = 0u; j < 4u; j++) {
            for (var i = 0u; i < 4u; i++) { acc[i] = fma(vec4<f32>(ak[j][i]), bk[j], acc[i]); }
        }
    }
    return acc;
}

fn activate(z: f32, code: u32) -> f32 {
    switch code {
        case 1u: { return 1.0 / (1.0 + exp(-z)); }
        case 2u: { return max(z, 0.0); }
        case 3u: { return select(exp(z) - 1.0, z, z > 0.0); }
        default: { return z; }
    }
}

// d act / dz written through the output a = act(z).
fn activate_derivative(a: f32, code: u32) -> f32 {
    switch code {
        case 1u: { return a * (1.0 - a); }
        case 2u: { return select(0.0, 1.0, a > 0.0); }
        case 3u: { return select(a + 1.0, 1.0, a > 0.0); }
        default: { return 1.0; }
    }
}

@compute @workgroup_size(16, 16)
fn linear_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * 4u; let n0 = gid.x * 4u;
    let acc = tile(m0, n0, false, false);
    for (var i = 0u; i < 4u; i++) {
        for (var t = 0u; t < 4u; t++) {
            let row = m0 + i; let col = n0 + t;
            if (row < p.m && col < p.n) {
                var z = acc[i][t];
                if (p.bias == 1u) { z += aux[col]; }
                c[row * p.n + col] = activate(z, p.act);
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn linear_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * 4u; let n0 = gid.x * 4u;
    let acc = tile(m0, n0, true, false);
    for (var i = 0u; i < 4u; i++) {
        for (var t = 0u; t < 4u; t++) {
            let row = m0 + i; let col = n0 + t;
            if (row < p.m && col < p.n) {
                let idx = row * p.n + col;
                c[idx] = select(acc[i][t], c[idx] + acc[i][t], p.accumulate == 1u);
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn linear_backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * 4u; let n0 = gid.x * 4u;
    let acc = tile(m0, n0, false, true);
    for (var i = 0u; i < 4u; i++) {
        for (var t = 0u; t < 4u; t++) {
            let row = m0 + i; let col = n0 + t;
            if (row < p.m && col < p.n) {
                let idx = row * p.n + col;
                c[idx] = acc[i][t] * activate_derivative(aux[idx], p.act);
            }
        }
    }
}
