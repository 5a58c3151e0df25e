// matmul_shared.wgsl: the three products of matmul.wgsl tiled through workgroup memory, the
// usual layout for hardware GPUs (coalesced loads, each staged value reused by a row or column
// of invocations). Tests hold these entry points to the CPU reference like the register-tiled
// ones.
//
// This file is compiled appended to matmul.wgsl: same math, same Params and bindings (shapes,
// layouts, access), and it uses that file's a_quad/b_quad loads (0 outside A and B) and its
// store() epilogues.
//
// Tiles (pipeline-overridable constants the host sets, shaders::SharedTile; each a multiple of
// 4): a workgroup of (TILE_N / 4) x (TILE_M / 4) invocations computes the TILE_M x TILE_N block
// of C at rows TILE_M wg.y.., cols TILE_N wg.x..; invocation (tx, ty) owns the 4 x 4 block at
// rows 4ty.., cols 4tx.. inside it. K is walked in slices of TILE_K: the workgroup stages
// op(A)[TILE_M x TILE_K] in sa and op(B)[TILE_K x TILE_N] in sb, its invocations loading quads
// in turn, then barrier, multiply out, barrier. 64 x 64 x 16: 256 invocations, one quad of each
// slice apiece, 8 KiB of workgroup memory.
// Host dispatch: (ceil(N / TILE_N), ceil(M / TILE_M), S), S the slices of a split
// linear_backward_weight (matmul.wgsl's slice(); p.k_slice is then a multiple of TILE_K), 1
// otherwise. Bounds: staged values outside A/B are 0 and the epilogues skip stores outside C;
// every invocation reaches every barrier (the loops around them have the same trip count in
// every invocation).

override TILE_M: u32;
override TILE_N: u32;
override TILE_K: u32;
override SA_LEN: u32 = TILE_M * TILE_K;
override SB_LEN: u32 = TILE_K * TILE_N;
var<workgroup> sa: array<f32, SA_LEN>;   // sa[k * TILE_M + m] = op(A)[m0 + m][k0 + k]
var<workgroup> sb: array<f32, SB_LEN>;   // sb[k * TILE_N + n] = op(B)[k0 + k][n0 + n]

// Invocation t of the workgroup stages its share of one K slice, reading memory along the
// stored rows.
fn stage(m0: u32, n0: u32, k0: u32, t: u32, trans_a: bool, trans_b: bool) {
    let invocations = (TILE_M / 4u) * (TILE_N / 4u);
    if (trans_a) {
        // A stored K x M: row k0 + k, columns m0 + 4i .. +4 (one u32 word for pixels).
        for (var q = t; q < TILE_K * (TILE_M / 4u); q += invocations) {
            let k = q / (TILE_M / 4u); let i = q % (TILE_M / 4u);
            let v = a_quad(k0 + k, m0 + 4u * i, p.k, p.m);
            for (var e = 0u; e < 4u; e++) { sa[k * TILE_M + 4u * i + e] = v[e]; }
        }
    } else {
        // A stored M x K: row m0 + r, columns k0 + 4c .. +4.
        for (var q = t; q < TILE_M * (TILE_K / 4u); q += invocations) {
            let r = q / (TILE_K / 4u); let c = q % (TILE_K / 4u);
            let v = a_quad(m0 + r, k0 + 4u * c, p.m, p.k);
            for (var e = 0u; e < 4u; e++) { sa[(4u * c + e) * TILE_M + r] = v[e]; }
        }
    }
    if (trans_b) {
        // B stored N x K: row n0 + r, columns k0 + 4c .. +4.
        for (var q = t; q < TILE_N * (TILE_K / 4u); q += invocations) {
            let r = q / (TILE_K / 4u); let c = q % (TILE_K / 4u);
            let v = b_quad(n0 + r, k0 + 4u * c, p.n, p.k);
            for (var e = 0u; e < 4u; e++) { sb[(4u * c + e) * TILE_N + r] = v[e]; }
        }
    } else {
        // B stored K x N: row k0 + k, columns n0 + 4j .. +4.
        for (var q = t; q < TILE_K * (TILE_N / 4u); q += invocations) {
            let k = q / (TILE_N / 4u); let j = q % (TILE_N / 4u);
            let v = b_quad(k0 + k, n0 + 4u * j, p.k, p.n);
            for (var e = 0u; e < 4u; e++) { sb[k * TILE_N + 4u * j + e] = v[e]; }
        }
    }
}

// The 4 x 4 block of invocation (tx, ty): q[t][i] = C[m0 + 4ty + i][n0 + 4tx + t].
fn tile_shared(wg: vec3<u32>, lid: vec3<u32>, k_begin: u32, k_end: u32, trans_a: bool, trans_b: bool) -> mat4x4<f32> {
    let m0 = wg.y * TILE_M; let n0 = wg.x * TILE_N;
    let t = lid.y * (TILE_N / 4u) + lid.x;
    var q = mat4x4<f32>();
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        stage(m0, n0, k0, t, trans_a, trans_b);
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            let ra = k * TILE_M + 4u * lid.y; let rb = k * TILE_N + 4u * lid.x;
            let av = vec4<f32>(sa[ra], sa[ra + 1u], sa[ra + 2u], sa[ra + 3u]);
            q[0] = fma(av, vec4<f32>(sb[rb]), q[0]);
            q[1] = fma(av, vec4<f32>(sb[rb + 1u]), q[1]);
            q[2] = fma(av, vec4<f32>(sb[rb + 2u]), q[2]);
            q[3] = fma(av, vec4<f32>(sb[rb + 3u]), q[3]);
        }
        workgroupBarrier();
    }
    return q;
}

@compute @workgroup_size(TILE_N / 4u, TILE_M / 4u)
fn linear_forward_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = tile_shared(wg, lid, 0u, p.k, false, false);
    store(EPILOGUE_FORWARD, 0u, wg.y * TILE_M + 4u * lid.y, wg.x * TILE_N + 4u * lid.x, q);
}

@compute @workgroup_size(TILE_N / 4u, TILE_M / 4u)
fn linear_backward_weight_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = slice(wg.z);
    let q = tile_shared(wg, lid, s.k_begin, s.k_end, true, false);
    store(EPILOGUE_WEIGHT, s.base, wg.y * TILE_M + 4u * lid.y, wg.x * TILE_N + 4u * lid.x, q);
}

@compute @workgroup_size(TILE_N / 4u, TILE_M / 4u)
fn linear_backward_input_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = tile_shared(wg, lid, 0u, p.k, false, true);
    store(EPILOGUE_INPUT, 0u, wg.y * TILE_M + 4u * lid.y, wg.x * TILE_N + 4u * lid.x, q);
}
