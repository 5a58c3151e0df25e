// matmul_shared.wgsl: the three products of matmul.wgsl tiled through workgroup memory, the
// usual layout for hardware GPUs (coalesced loads, each staged value reused 64 times). The host
// uses these entry points on hardware adapters and the register-tiled ones on software adapters
// such as lavapipe, where barriers are slow; tests hold both to the CPU reference.
//
// This file is compiled appended to matmul.wgsl: same math, same Params and bindings (shapes,
// layouts, access), and it uses that file's a_quad/b_quad loads (0 outside A and B) and its
// store() epilogues.
//
// Tiles: a 16 x 16 workgroup computes the 64 x 64 block of C at rows 64 wg.y.., cols 64 wg.x..;
// invocation (tx, ty) owns the 4 x 4 block at rows 4ty.., cols 4tx.. inside it. K is walked in
// slices of SK = 16: the workgroup stages op(A)[64 x 16] in sa and op(B)[16 x 64] in sb (8 KiB
// in all), each invocation loading one quad of each, then barrier, multiply out, barrier.
// Host dispatch: (ceil(N / 64), ceil(M / 64), 1). Bounds: staged values outside A/B are 0 and
// the epilogues skip stores outside C; every invocation reaches every barrier.

const SK: u32 = 16u;
var<workgroup> sa: array<f32, 1024>;   // sa[k * 64 + m] = op(A)[m0 + m][k0 + k]
var<workgroup> sb: array<f32, 1024>;   // sb[k * 64 + n] = op(B)[k0 + k][n0 + n]

// Invocation t (0..256) stages one quad of each slice, reading memory along its rows.
fn stage(m0: u32, n0: u32, k0: u32, t: u32, trans_a: bool, trans_b: bool) {
    if (trans_a) {
        // A stored K x M: row k0 + k, columns m0 + 4i .. +4 (one u32 word for pixels).
        let k = t / 16u; let i = t % 16u;
        let v = a_quad(k0 + k, m0 + 4u * i, p.k, p.m);
        for (var e = 0u; e < 4u; e++) { sa[k * 64u + 4u * i + e] = v[e]; }
    } else {
        // A stored M x K: row m0 + r, columns k0 + 4c .. +4.
        let r = t / 4u; let c = t % 4u;
        let v = a_quad(m0 + r, k0 + 4u * c, p.m, p.k);
        for (var e = 0u; e < 4u; e++) { sa[(4u * c + e) * 64u + r] = v[e]; }
    }
    if (trans_b) {
        // B stored N x K: row n0 + r, columns k0 + 4c .. +4.
        let r = t / 4u; let c = t % 4u;
        let v = b_quad(n0 + r, k0 + 4u * c, p.n, p.k);
        for (var e = 0u; e < 4u; e++) { sb[(4u * c + e) * 64u + r] = v[e]; }
    } else {
        // B stored K x N: row k0 + k, columns n0 + 4j .. +4.
        let k = t / 16u; let j = t % 16u;
        let v = b_quad(k0 + k, n0 + 4u * j, p.k, p.n);
        for (var e = 0u; e < 4u; e++) { sb[k * 64u + 4u * j + e] = v[e]; }
    }
}

// The 4 x 4 block of invocation (tx, ty): q[t][i] = C[m0 + 4ty + i][n0 + 4tx + t].
fn tile_shared(wg: vec3<u32>, lid: vec3<u32>, trans_a: bool, trans_b: bool) -> mat4x4<f32> {
    let m0 = wg.y * 64u; let n0 = wg.x * 64u;
    let t = lid.y * 16u + lid.x;
    var q = mat4x4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += SK) {
        stage(m0, n0, k0, t, trans_a, trans_b);
        workgroupBarrier();
        for (var k = 0u; k < SK; k++) {
            let ra = k * 64u + 4u * lid.y; let rb = k * 64u + 4u * lid.x;
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

@compute @workgroup_size(16, 16)
fn linear_forward_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store(EPILOGUE_FORWARD, wg.y * 64u + 4u * lid.y, wg.x * 64u + 4u * lid.x, tile_shared(wg, lid, false, false));
}

@compute @workgroup_size(16, 16)
fn linear_backward_weight_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store(EPILOGUE_WEIGHT, wg.y * 64u + 4u * lid.y, wg.x * 64u + 4u * lid.x, tile_shared(wg, lid, true, false));
}

@compute @workgroup_size(16, 16)
fn linear_backward_input_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    store(EPILOGUE_INPUT, wg.y * 64u + 4u * lid.y, wg.x * 64u + 4u * lid.x, tile_shared(wg, lid, false, true));
}
