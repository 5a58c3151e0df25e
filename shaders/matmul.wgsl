// matmul.wgsl: the three products of a linear layer, register-tiled, with fused epilogues.
//
// Math. op(A) is M x K, op(B) is K x N, C is M x N; everything row-major in memory.
//   linear_forward          C = act(op(A)·op(B) + bias)   A = X (N x D) or A1, B = W; bias[N] if p.bias = 1
//   linear_backward_weight  C (+)= A^T · B                 A stored K x M (the layer input), B = dZ (K x N);
//                           split K: C_s = A_s^T · B_s over slice s of the K rows, into slot s
//   linear_backward_input   C = (A · B^T) ⊙ act'(aux)      A = dZ (M x K), B stored N x K (the weights),
//                                                          aux = the layer's input activations (M x N)
// act/act' use the codes ACT_IDENTITY, ACT_SIGMOID, ACT_RELU, ACT_ELU (the host's
// shaders::activation_code); act' is written via a = act(z).
// Dropout (src/dropout.rs, when p.drop_threshold > 0): element (row, col) of a hidden layer's
// output is kept iff dropout_keeps(p.drop_row0 + row, col), i.e. hash32(hash32(word ^ r) ^ col)
// >= drop_threshold with word = p.drop_word, and then scaled by p.drop_scale = 1/(1-P):
//   linear_forward         C = act(...) * keep * drop_scale
//   linear_backward_input  C = (A·B^T) * keep * drop_scale * act'(aux / drop_scale)
//                          (aux holds the masked output; dividing by the scale recovers act's
//                          output to rounding, and exactly where it matters for ReLU: its sign)
//
// Bindings (group 0):
//   0 uniform p: Params (below)
//   1 storage a: array<vec4<u32>>, read, word w at a[w / 4][w % 4]. A as stored (M x K, or K x M
//     for linear_backward_weight), row stride p.lda elements, starting p.a_row0 rows into the
//     binding (a chunk of pixel rows that starts between two 256-byte-aligned rows is bound from
//     the aligned row before it). p.a_u8 = 0: f32 bit patterns. p.a_u8 = 1: bytes packed four
//     per word (little-endian), value byte/255; p.lda is then in bytes, a multiple of 4, and the
//     padding bytes of each row are 0.
//   2 storage b: array<vec4<f32>>, read, element e at b[e / 4][e % 4]. B as stored (K x N, or
//     N x K for linear_backward_input), stride p.ldb.
//   a and b are bound in whole 16-byte quads (the host rounds their views up; the tail is padding).
//   3 storage aux: array<f32>, read. linear_forward: bias[N]; linear_backward_input: act output
//     (M x N, stride N); otherwise unused (bind anything).
//   4 storage c: array<f32>, read_write. C, M x N, stride N; for linear_backward_weight split into
//     S slices of p.k_slice rows of K, S slots of M x N one after another, slot s at s M N
//     (split_k_reduce.wgsl then sums them in a fixed order).
//   p.k_slice: linear_backward_weight's rows of K per slice (a multiple of 4; K when not split);
//   the other entry points ignore it.
// Loads: with the override VEC4 = true, four consecutive f32 elements that start on a 16-byte
// boundary and lie inside their row load as one vec4 (rows of a multiple of 4 elements always
// do); the rest, and everything when VEC4 = false, load one element at a time. Same values.
//
// Invocation (gx, gy) of the global grid computes the BLOCK x BLOCK = 8 x 8 block of C at rows
// 8*gy.., cols 8*gx.. A workgroup is WG_X x WG_Y invocations, pipeline-overridable constants the
// host sets (shaders::RegisterTile): 16 x 2 (16 rows x 128 columns of C) for wide outputs, 2 x 16
// (128 rows x 16 columns) when N <= 16 such as the 10 classes.
// Host dispatch: (ceil(N / (BLOCK WG_X)), ceil(M / (BLOCK WG_Y)), S) with S = ceil(K / k_slice)
// slices for linear_backward_weight, 1 for the others; slice gid.z covers rows
// [gid.z k_slice, min((gid.z + 1) k_slice, K)) of K.
// Bounds: loads outside A or B read 0 (a u8 quad that starts inside a row may end in the row's
// zero padding, which also reads 0); stores outside C are skipped. No workgroup memory and no barriers: neighbouring invocations
// share loads through the cache (barriers are slow on software adapters such as lavapipe).

struct Params {
    m: u32, n: u32, k: u32,
    lda: u32, ldb: u32,
    a_u8: u32,        // 1: A holds packed bytes
    bias: u32,        // linear_forward: 1 adds aux[col]
    act: u32,         // activation code (see above)
    accumulate: u32,  // linear_backward_weight: 1 adds to C instead of overwriting it
    a_row0: u32,      // stored row r of A is row a_row0 + r of binding a
    k_slice: u32,     // linear_backward_weight: rows of K per slice of a split product
    drop_threshold: u32,  // dropout: hashes below it drop the element; 0: no dropout
    drop_scale: f32,      // dropout: 1 / (1 - P), for kept elements
    drop_word: u32,       // dropout: the step and layer's mask word
    drop_row0: u32,       // dropout: row of the step's batch where C's first row lies
    _pad0: u32,
}

override WG_X: u32;
override WG_Y: u32;
override VEC4: bool = false;

// Outputs per invocation, a side: the four 4 x 4 quadrants of a Tile.
const BLOCK: u32 = 8u;

const ACT_IDENTITY: u32 = 0u;
const ACT_SIGMOID: u32 = 1u;
const ACT_RELU: u32 = 2u;
const ACT_ELU: u32 = 3u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// Word w of binding a.
fn a_word(w: u32) -> u32 { return a[w / 4u][w % 4u]; }

// Word w of binding a, as an f32.
fn a_f32(w: u32) -> f32 { return bitcast<f32>(a_word(w)); }

// Element e of binding b.
fn b_f32(e: u32) -> f32 { return b[e / 4u][e % 4u]; }

// Four consecutive elements of stored A, row r, columns col..col+3 (col % 4 == 0 for u8).
fn a_quad(r: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
    if (r >= rows || col >= cols) { return vec4<f32>(0.0); }
    let i = (p.a_row0 + r) * p.lda + col;
    // A u8 quad starts inside the row (col % 4 == 0) and ends in it or in its zero padding.
    if (p.a_u8 == 1u) { return unpack4x8unorm(a_word(i / 4u)); }
    if (col + 3u < cols) {
        if (VEC4 && i % 4u == 0u) { return bitcast<vec4<f32>>(a[i / 4u]); }
        return vec4<f32>(a_f32(i), a_f32(i + 1u), a_f32(i + 2u), a_f32(i + 3u));
    }
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) {
        if (col + t < cols) { v[t] = a_f32(i + t); }
    }
    return v;
}

// Four consecutive elements of stored B, row r, columns col..col+3.
fn b_quad(r: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (r >= rows) { return v; }
    let i = r * p.ldb + col;
    if (col + 3u < cols) {
        if (VEC4 && i % 4u == 0u) { return b[i / 4u]; }
        return vec4<f32>(b_f32(i), b_f32(i + 1u), b_f32(i + 2u), b_f32(i + 3u));
    }
    for (var t = 0u; t < 4u; t++) {
        if (col + t < cols) { v[t] = b_f32(i + t); }
    }
    return v;
}

// The A block of op(A) at rows m0..m0+4, columns k0..k0+4, as a matrix whose column j is
// op(A)[m0..m0+4][k0+j].
fn a_block(m0: u32, k0: u32, trans_a: bool) -> mat4x4<f32> {
    if (trans_a) {
        return mat4x4<f32>(a_quad(k0, m0, p.k, p.m), a_quad(k0 + 1u, m0, p.k, p.m),
                           a_quad(k0 + 2u, m0, p.k, p.m), a_quad(k0 + 3u, m0, p.k, p.m));
    }
    return transpose(mat4x4<f32>(a_quad(m0, k0, p.m, p.k), a_quad(m0 + 1u, k0, p.m, p.k),
                                 a_quad(m0 + 2u, k0, p.m, p.k), a_quad(m0 + 3u, k0, p.m, p.k)));
}

// The B block of op(B) at rows k0..k0+4, columns n0..n0+4, as a matrix whose column j is
// op(B)[k0+j][n0..n0+4].
fn b_block(k0: u32, n0: u32, trans_b: bool) -> mat4x4<f32> {
    if (trans_b) {
        return transpose(mat4x4<f32>(b_quad(n0, k0, p.n, p.k), b_quad(n0 + 1u, k0, p.n, p.k),
                                     b_quad(n0 + 2u, k0, p.n, p.k), b_quad(n0 + 3u, k0, p.n, p.k)));
    }
    return mat4x4<f32>(b_quad(k0, n0, p.k, p.n), b_quad(k0 + 1u, n0, p.k, p.n),
                       b_quad(k0 + 2u, n0, p.k, p.n), b_quad(k0 + 3u, n0, p.k, p.n));
}

// The BLOCK x BLOCK = 8 x 8 block of op(A)·op(B) at (m0, n0), as four 4 x 4 quadrants. Quadrant
// c[2X + Y] covers rows m0 + 4X.., columns n0 + 4Y..; element (row i, column t) is c[..][t][i].
// With a = a_block (a[j][i] = A[i][k0+j]) and b = b_block (b[j][t] = B[k0+j][t]), one k-step of
// a quadrant is the matrix product a * transpose(b): 64 fmas, no indexing into private arrays.
struct Tile {
    c00: mat4x4<f32>, c01: mat4x4<f32>, c10: mat4x4<f32>, c11: mat4x4<f32>,
}

fn tile(m0: u32, n0: u32, k_begin: u32, k_end: u32, trans_a: bool, trans_b: bool) -> Tile {
    var t: Tile;
    for (var k0 = k_begin; k0 < k_end; k0 += 4u) {
        let a0 = a_block(m0, k0, trans_a);
        let a1 = a_block(m0 + 4u, k0, trans_a);
        let b0 = transpose(b_block(k0, n0, trans_b));
        let b1 = transpose(b_block(k0, n0 + 4u, trans_b));
        t.c00 += a0 * b0;
        t.c01 += a0 * b1;
        t.c10 += a1 * b0;
        t.c11 += a1 * b1;
    }
    return t;
}

fn activate(z: f32, code: u32) -> f32 {
    switch code {
        case ACT_SIGMOID: { return 1.0 / (1.0 + exp(-z)); }
        case ACT_RELU: { return max(z, 0.0); }
        case ACT_ELU: { return select(exp(z) - 1.0, z, z > 0.0); }
        default: { return z; }
    }
}

// d act / dz written through the output a = act(z).
fn activate_derivative(a: f32, code: u32) -> f32 {
    switch code {
        case ACT_SIGMOID: { return a * (1.0 - a); }
        case ACT_RELU: { return select(0.0, 1.0, a > 0.0); }
        case ACT_ELU: { return select(a + 1.0, 1.0, a > 0.0); }
        default: { return 1.0; }
    }
}

// Wellons' lowbias32, a bijection on u32 (the twin of dropout::hash32).
fn hash32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u; x *= 0x7feb352du;
    x ^= x >> 15u; x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// Whether dropout keeps element (row, col) of C (the twin of dropout::keeps).
fn dropout_keeps(row: u32, col: u32) -> bool {
    return hash32(hash32(p.drop_word ^ (p.drop_row0 + row)) ^ col) >= p.drop_threshold;
}

// Each entry point finishes the tile with its epilogue, one 4 x 4 quadrant at a time; the
// epilogue is a constant at every call site, so the compiler keeps only its own branch.
const EPILOGUE_FORWARD: u32 = 0u;   // act(acc + bias)
const EPILOGUE_WEIGHT: u32 = 1u;    // acc, or C + acc when accumulating across chunks
const EPILOGUE_INPUT: u32 = 2u;     // acc * act'(aux)

// The value to store at element idx = row * N + col of C's slot that starts at c[base].
fn epilogue(kind: u32, base: u32, idx: u32, row: u32, col: u32, acc: f32) -> f32 {
    let dropping = p.drop_threshold > 0u;
    switch kind {
        case EPILOGUE_FORWARD: {
            var z = acc;
            if (p.bias == 1u) { z += aux[col]; }   // aux is the bias only when there is one
            let a = activate(z, p.act);
            if (dropping) { return select(0.0, a * p.drop_scale, dropout_keeps(row, col)); }
            return a;
        }
        case EPILOGUE_WEIGHT: { return select(acc, c[base + idx] + acc, p.accumulate == 1u); }
        default: {   // EPILOGUE_INPUT
            if (dropping) {
                let kept = acc * p.drop_scale * activate_derivative(aux[idx] / p.drop_scale, p.act);
                return select(0.0, kept, dropout_keeps(row, col));
            }
            return acc * activate_derivative(aux[idx], p.act);
        }
    }
}

// Stores quadrant q (q[t][i] = C[r0 + i][c0 + t]) of the slot at c[base] through the epilogue,
// skipping cells outside C.
fn store(kind: u32, base: u32, r0: u32, c0: u32, q: mat4x4<f32>) {
    for (var t = 0u; t < 4u; t++) {
        for (var i = 0u; i < 4u; i++) {
            let row = r0 + i; let col = c0 + t;
            if (row < p.m && col < p.n) {
                let idx = row * p.n + col;
                c[base + idx] = epilogue(kind, base, idx, row, col, q[t][i]);
            }
        }
    }
}

fn store_tile(kind: u32, base: u32, m0: u32, n0: u32, t: Tile) {
    store(kind, base, m0, n0, t.c00); store(kind, base, m0, n0 + 4u, t.c01);
    store(kind, base, m0 + 4u, n0, t.c10); store(kind, base, m0 + 4u, n0 + 4u, t.c11);
}

// Slice z of K for a split product: rows [k_begin, k_end), and its slot of C.
struct Slice {
    k_begin: u32,
    k_end: u32,
    base: u32,
}

fn slice(z: u32) -> Slice {
    let k_begin = z * p.k_slice;
    return Slice(k_begin, min(k_begin + p.k_slice, p.k), z * p.m * p.n);
}

@compute @workgroup_size(WG_X, WG_Y)
fn linear_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * BLOCK; let n0 = gid.x * BLOCK;
    store_tile(EPILOGUE_FORWARD, 0u, m0, n0, tile(m0, n0, 0u, p.k, false, false));
}

@compute @workgroup_size(WG_X, WG_Y)
fn linear_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * BLOCK; let n0 = gid.x * BLOCK;
    let s = slice(gid.z);
    store_tile(EPILOGUE_WEIGHT, s.base, m0, n0, tile(m0, n0, s.k_begin, s.k_end, true, false));
}

@compute @workgroup_size(WG_X, WG_Y)
fn linear_backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * BLOCK; let n0 = gid.x * BLOCK;
    store_tile(EPILOGUE_INPUT, 0u, m0, n0, tile(m0, n0, 0u, p.k, false, true));
}
