//! The CPU step's phases, one row per layer's forward and backward and one for the output layer:
//! their names, dense-equivalent FLOPs, the FLOPs their kernels run and least bytes moved, in the
//! order the step runs them.

use gpu_mnist::cpu::fast::PhaseTimes;
use gpu_mnist::model::Shape;
use gpu_mnist::optim::Optimizer;

pub struct Phase {
    pub name: String,
    /// As NumPy's dense products count them.
    pub flops: f64,
    /// What the kernels run, where it is known: the input layer's products take each inked quad's
    /// 4 pixels (blank ones included) by fused multiply-adds, the output layer's are dense. A
    /// hidden-to-hidden layer's blocks take the dense or the sparse products by their density,
    /// so its work is not counted here.
    pub work: Option<f64>,
    pub bytes: f64,
}

/// The phases of a step over `rows` rows whose pixels hold `nnz` non-zeros in `quads` inked quads
/// (4 pixels side by side): hidden layer 1's forward up to layer L's, the output layer (its
/// forward, softmax, its gradients and dZ_L), then layer L's backward down to layer 1's.
pub fn phases(s: &Shape, rows: f64, nnz: f64, quads: f64) -> Vec<Phase> {
    let last = s.hidden.len();
    let layer = |l: usize| {
        let (fan_in, fan_out) = s.layer(l);
        (fan_in as f64, fan_out as f64)
    };
    let input = |l: usize| if l == 0 { "X".to_string() } else { format!("A{l}") };
    let mut out = Vec::with_capacity(2 * last + 1);
    for l in 0..last {
        let (fi, fo) = layer(l);
        // The first layer reads the sparse pixels: a column index and a value per non-zero.
        let reads = if l == 0 { 6.0 * nnz } else { 4.0 * rows * fi };
        let flops = 2.0 * rows * fi * fo;
        out.push(Phase {
            name: format!("layer {} forward: act({}·W{} + b{})", l + 1, input(l), l + 1, l + 1),
            flops,
            work: (l == 0).then_some(8.0 * quads * fo),
            bytes: reads + 4.0 * (fi * fo + fo + rows * fo),
        });
    }
    let (h, k) = layer(last);
    out.push(Phase {
        name: format!("output: {}·W{} + b{}, softmax, back to dZ{last}", input(last), last + 1, last + 1),
        // Z, dW_out and dZ_last: three products of the same size.
        flops: 6.0 * rows * h * k,
        work: Some(6.0 * rows * h * k),
        bytes: 8.0 * rows * h + 4.0 * h * k + rows,
    });
    for l in (0..last).rev() {
        let (fi, fo) = layer(l);
        out.push(match l {
            0 => Phase {
                name: "layer 1 backward: X^T·dZ1, db1".into(),
                flops: 2.0 * rows * fi * fo,
                work: Some(8.0 * quads * fo),
                bytes: 6.0 * nnz + 4.0 * (rows * fo + fi * fo),
            },
            _ => Phase {
                name: format!("layer {} backward: dW{}, db{}, dZ{l}", l + 1, l + 1, l + 1),
                // dW_l = A_{l-1}^T·dZ_l and dZ_{l-1} = dZ_l·W_l^T ⊙ act'.
                flops: 4.0 * rows * fi * fo,
                work: None,
                bytes: 4.0 * (2.0 * rows * fi + rows * fo + 2.0 * fi * fo),
            },
        });
    }
    out
}

/// `times` in the order of `phases`: nanoseconds summed over threads.
pub fn phase_nanos(times: &PhaseTimes, hidden_layers: usize) -> Vec<u64> {
    let at = |v: &[u64], l: usize| v.get(l).copied().unwrap_or(0);
    let mut out: Vec<u64> = (0..hidden_layers).map(|l| at(&times.forward, l)).collect();
    out.push(times.head);
    out.extend((0..hidden_layers).rev().map(|l| at(&times.backward, l)));
    out
}

/// The update of `p` parameters by `rule`: its name, FLOPs and bytes moved (f32 reads and writes
/// of the parameters, gradients and the rule's moments).
pub fn update_cost(rule: Optimizer, p: f64) -> (&'static str, f64, f64) {
    match rule {
        Optimizer::Gd => ("gd_update: w -= lr·g", 2.0 * p, 12.0 * p),
        Optimizer::Momentum => ("momentum_update: m = μm + g, w -= lr·m", 4.0 * p, 20.0 * p),
        Optimizer::Nesterov => ("nesterov_update: m = μm + g, w -= lr·(g + μm)", 6.0 * p, 20.0 * p),
        Optimizer::Adam => ("adam_update: m, v moments, w -= lr·m̂/(√v̂ + ε)", 13.0 * p, 28.0 * p),
    }
}
