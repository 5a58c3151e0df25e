//! How a matmul is tiled: register tiles (matmul.wgsl) and workgroup-memory tiles
//! (matmul_shared.wgsl) of a few sizes, and for the weight gradient, split K (slices of the rows
//! reduced in a fixed order by split_k_reduce.wgsl). These are the candidates the tuner times.

/// Outputs per invocation of matmul.wgsl, a side: its `BLOCK` (four 4 x 4 quadrants).
pub const MATMUL_BLOCK: u32 = 8;

/// A register-tiled matmul workgroup: WG_X x WG_Y invocations of BLOCK x BLOCK outputs each;
/// with `vec4`, aligned f32 quads of A and B load as one vec4 each (matmul.wgsl's VEC4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisterTile {
    pub wg_x: u32,
    pub wg_y: u32,
    pub vec4: bool,
}

impl RegisterTile {
    /// 16 rows x 128 columns of C: the register tiling's default for outputs wider than
    /// `NARROW_MAX_N`.
    pub const WIDE: RegisterTile = RegisterTile { wg_x: 16, wg_y: 2, vec4: false };
    /// 128 rows x 16 columns of C: outputs at most `NARROW_MAX_N` wide (the 10 classes).
    pub const NARROW: RegisterTile = RegisterTile { wg_x: 2, wg_y: 16, vec4: false };
    /// The widest output the narrow tile is used for.
    pub const NARROW_MAX_N: u32 = 16;

    /// (rows, columns) of C per workgroup.
    pub fn outputs(self) -> (u32, u32) {
        (MATMUL_BLOCK * self.wg_y, MATMUL_BLOCK * self.wg_x)
    }

    /// The same workgroup loading aligned quads as vec4s.
    pub const fn vec4(self) -> RegisterTile {
        RegisterTile { vec4: true, ..self }
    }
}

/// A workgroup-memory matmul tile (matmul_shared.wgsl): TILE_M x TILE_N outputs per workgroup,
/// 4 x 4 per invocation, the inner dimension staged TILE_K at a time. All multiples of 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedTile {
    pub m: u32,
    pub n: u32,
    pub k: u32,
}

impl SharedTile {
    /// 64 x 64 outputs by 16 x 16 invocations, K in slices of 16 (8 KiB of workgroup memory): the
    /// workgroup-memory tiling's default.
    pub const DEFAULT: SharedTile = SharedTile { m: 64, n: 64, k: 16 };

    pub fn workgroup_size(self) -> [u32; 3] {
        [self.n / 4, self.m / 4, 1]
    }

    /// Bytes of workgroup memory: the staged slices of A (m x k) and B (k x n).
    pub fn workgroup_bytes(self) -> u32 {
        4 * (self.m * self.k + self.k * self.n)
    }
}

/// A matmul's tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    Register(RegisterTile),
    Shared(SharedTile),
}

impl Tile {
    /// (rows, columns) of C per workgroup.
    pub fn outputs(self) -> (u32, u32) {
        match self {
            Tile::Register(t) => t.outputs(),
            Tile::Shared(t) => (t.m, t.n),
        }
    }

    /// What the rows of a slice of K must be a multiple of: the inner loop's step.
    pub fn k_step(self) -> u32 {
        match self {
            Tile::Register(_) => 4,
            Tile::Shared(t) => t.k,
        }
    }

    /// "register 16x128", "shared 64x64x16": rows x columns of C per workgroup, and K's slice.
    pub fn name(self) -> String {
        match self {
            Tile::Register(t) => {
                let (m, n) = t.outputs();
                format!("register {m}x{n}{}", if t.vec4 { " vec4" } else { "" })
            }
            Tile::Shared(t) => format!("shared {}x{}x{}", t.m, t.n, t.k),
        }
    }
}

/// How one product runs: its tile and, for the weight gradient, the slices of K (1: not split).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulConfig {
    pub tile: Tile,
    pub split: u32,
}

impl MatmulConfig {
    pub fn new(tile: Tile) -> Self {
        MatmulConfig { tile, split: 1 }
    }

    /// "shared 64x64x16", with " split 4" when K is split.
    pub fn name(self) -> String {
        match self.split {
            1 => self.tile.name(),
            s => format!("{} split {s}", self.tile.name()),
        }
    }

    /// Rows of K per slice for an inner dimension of `k` (a multiple of the tile's K step), and
    /// the slices that makes: at least `MIN_SLICE_ROWS` rows a slice, so small products split
    /// less (or not at all).
    pub fn slices(self, k: u32) -> (u32, u32) {
        let step = self.tile.k_step();
        let most = (k / MIN_SLICE_ROWS).clamp(1, self.split.max(1));
        let k_slice = k.div_ceil(most).next_multiple_of(step).max(step);
        (k_slice, k.div_ceil(k_slice).max(1))
    }
}

/// The fewest rows of K a slice of a split product sums.
pub const MIN_SLICE_ROWS: u32 = 64;

/// Register tiles the tuner times: 16 x 128, 32 x 64 and 64 x 32 outputs per workgroup, each
/// with scalar and with vec4 loads.
pub const REGISTER_CANDIDATES: [RegisterTile; 6] = {
    const SQUARE: RegisterTile = RegisterTile { wg_x: 8, wg_y: 4, vec4: false };
    const TALL: RegisterTile = RegisterTile { wg_x: 4, wg_y: 8, vec4: false };
    [RegisterTile::WIDE, SQUARE, TALL, RegisterTile::WIDE.vec4(), SQUARE.vec4(), TALL.vec4()]
};
/// Workgroup-memory tiles the tuner times (256, 64 and 128 invocations; 8, 4 and 6 KiB).
pub const SHARED_CANDIDATES: [SharedTile; 3] =
    [SharedTile::DEFAULT, SharedTile { m: 32, n: 32, k: 16 }, SharedTile { m: 64, n: 32, k: 16 }];
/// Slices of K the tuner tries for the weight gradient.
pub const SPLIT_CANDIDATES: [u32; 3] = [1, 4, 16];

/// Every tile the tuner may choose for a wide output.
pub fn tiles() -> Vec<Tile> {
    REGISTER_CANDIDATES.map(Tile::Register).into_iter().chain(SHARED_CANDIDATES.map(Tile::Shared)).collect()
}
