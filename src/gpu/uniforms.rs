//! The uniform structs that mirror each shader's `Params`, laid out as WGSL lays them out
//! (`tests/shaders.rs` checks every size and field offset against the shaders).

/// A uniform struct's layout as the Rust side lays it out: what the shader's struct must match.
#[derive(Clone, Copy, Debug)]
pub struct UniformLayout {
    /// The Rust type, for messages.
    pub name: &'static str,
    pub size: usize,
    /// Named fields and their byte offsets (the padding that rounds the size to 16 bytes is not
    /// listed).
    pub fields: &'static [(&'static str, usize)],
}

/// A `#[repr(C)]` uniform of 4-byte scalar fields, padded to a multiple of 16 bytes (the uniform
/// buffer rule of std140-style layouts, e.g. OpenGL's) and described by `LAYOUT`.
macro_rules! uniform {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Zeros that round the size up to a multiple of 16 bytes (`..Default::default()`).
            pub _pad: [u32; (4 - [$(stringify!($field)),*].len() % 4) % 4],
        }

        impl $name {
            pub const LAYOUT: UniformLayout = UniformLayout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                fields: &[$((stringify!($field), std::mem::offset_of!($name, $field))),*],
            };
        }

        const _: () = assert!(std::mem::size_of::<$name>() % 16 == 0);
    };
}

uniform! {
    /// Mirrors `Params` of matmul.wgsl (and of the files compiled appended to it).
    pub struct MatmulParams {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        pub lda: u32,
        pub ldb: u32,
        /// 1: A holds pixel bytes packed four per word.
        pub a_u8: u32,
        /// linear_forward: 1 adds the bias.
        pub bias: u32,
        /// The activation code (`activation_code`).
        pub act: u32,
        /// linear_backward_weight: 1 adds to C instead of overwriting it.
        pub accumulate: u32,
        /// Row of binding `a` where A's first stored row lies.
        pub a_row0: u32,
        /// linear_backward_weight: rows of K per slice of a split product (K when not split).
        pub k_slice: u32,
        /// Dropout (`crate::dropout`): hashes below this drop an element; 0 turns it off.
        pub drop_threshold: u32,
        /// Dropout: 1 / (1 - p), the factor of kept elements.
        pub drop_scale: f32,
        /// Dropout: the step and layer's mask word (`dropout::word`), rewritten every step.
        pub drop_word: u32,
        /// Dropout: the row of the step's batch where C's first row lies.
        pub drop_row0: u32,
    }
}

uniform! {
    /// Mirrors `Params` of split_k_reduce.wgsl.
    pub struct SplitKParams {
        pub count: u32,
        pub splits: u32,
        pub accumulate: u32,
    }
}

uniform! {
    /// Mirrors `Params` of softmax_xent.wgsl.
    pub struct SoftmaxParams {
        pub n: u32,
        pub k: u32,
        pub row_offset: u32,
        pub scale: f32,
    }
}

uniform! {
    /// Mirrors `Params` of column_sum.wgsl.
    pub struct ColumnSumParams {
        pub rows: u32,
        pub cols: u32,
        pub accumulate: u32,
        /// The first row summed.
        pub first_row: u32,
    }
}

uniform! {
    /// Mirrors `Params` of optimizer_update.wgsl: the rule's hyper-parameters, this step's lr and
    /// Adam bias corrections `c1`, `c2`, and where the weights end in the flat parameter buffer
    /// (every weight lies in `[0, weights_end)`, the biases after it: only weights decay).
    pub struct OptimizerParams {
        pub count: u32,
        pub lr: f32,
        pub momentum: f32,
        pub beta1: f32,
        pub beta2: f32,
        pub eps: f32,
        pub weight_decay: f32,
        pub c1: f32,
        pub c2: f32,
        pub weights_end: u32,
    }
}
