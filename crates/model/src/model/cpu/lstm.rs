//! The small model's caption encoder ([`crate::model::scratch::BiLstmEncoder`]) on the CPU.
//! Burn runs each of the LSTM's steps (40 per direction, the padding included) as some
//! twenty operations of its own: 2.5 ms in the page's one thread for 6 M multiply-adds. Here
//! a direction's four gates are one multiply against weights packed at load
//! ([`super::panels`]): every step's input at once, then the hidden state step by step. The
//! forward direction stops after the caption's last token, the only steps pooling reads.

use super::panels::{Panels, Rows};

/// One gate of Burn's LSTM: its input and hidden transforms, weights `[inputs, hidden]`
/// (Burn's layout) and biases `[hidden]`.
pub struct Gate {
    pub input: Vec<f32>,
    pub input_bias: Vec<f32>,
    pub hidden: Vec<f32>,
    pub hidden_bias: Vec<f32>,
}

/// One direction: the gates (input, forget, output, cell: Burn's order) side by side.
#[derive(Clone, Debug)]
pub struct Direction {
    /// `[embed, 4 · hidden]`.
    input: Panels,
    /// `[hidden, 4 · hidden]`.
    hidden: Panels,
    /// Both transforms' biases summed, `[4 · hidden]`.
    bias: Vec<f32>,
}

impl Direction {
    pub fn new(gates: [Gate; 4]) -> Self {
        let hidden = gates[0].hidden_bias.len();
        // Four `[k, hidden]` matrices as one `[k, 4 · hidden]`.
        let side_by_side = |part: fn(&Gate) -> &Vec<f32>| {
            let k = part(&gates[0]).len() / hidden;
            let rows = (0..k).flat_map(|r| gates.iter().map(move |g| &part(g)[r * hidden..]));
            let values: Vec<f32> = rows.flat_map(|row| &row[..hidden]).copied().collect();
            Panels::pack(&values, k, 4 * hidden)
        };
        let bias = gates
            .iter()
            .flat_map(|g| g.input_bias.iter().zip(&g.hidden_bias).map(|(a, b)| a + b))
            .collect();
        Self {
            input: side_by_side(|g| &g.input),
            hidden: side_by_side(|g| &g.hidden),
            bias,
        }
    }

    /// The hidden states `[steps, hidden]` for the inputs `x` `[steps, embed]`, visiting the
    /// steps in `order` from a zero state (steps not visited stay zero).
    fn run(&self, x: &[f32], steps: usize, order: impl Iterator<Item = usize>) -> Vec<f32> {
        let width = self.bias.len();
        let hidden = width / 4;
        let mut gates = vec![0.0; steps * width];
        self.input.multiply(&Rows::tile(x, steps), 0, &mut gates);
        let mut out = vec![0.0; steps * hidden];
        let (mut h, mut c) = (vec![0.0; hidden], vec![0.0; hidden]);
        let mut recurrent = vec![0.0; width];
        for t in order {
            self.hidden.multiply(&Rows::tile(&h, 1), 0, &mut recurrent);
            let g: Vec<f32> = (gates[t * width..(t + 1) * width].iter())
                .zip(&self.bias)
                .zip(&recurrent)
                .map(|((x, b), r)| (x + b) + r)
                .collect();
            let (i, rest) = g.split_at(hidden);
            let (f, rest) = rest.split_at(hidden);
            let (o, candidate) = rest.split_at(hidden);
            for j in 0..hidden {
                c[j] = sigmoid(f[j]) * c[j] + sigmoid(i[j]) * candidate[j].tanh();
                h[j] = sigmoid(o[j]) * c[j].tanh();
            }
            out[t * hidden..(t + 1) * hidden].copy_from_slice(&h);
        }
        out
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Embedding → BiLSTM → `[bag of words, mean, max]`, as [`BiLstmEncoder::forward`] computes
/// at inference.
///
/// [`BiLstmEncoder::forward`]: crate::model::scratch::BiLstmEncoder::forward
#[derive(Clone, Debug)]
pub struct CpuBiLstm {
    /// `[vocab, embed]`.
    pub embedding: Vec<f32>,
    pub embed: usize,
    pub forward: Direction,
    pub reverse: Direction,
}

impl CpuBiLstm {
    /// One caption's features from its padded ids and mask (1 for a token, 0 for padding).
    pub fn features(&self, ids: &[i64], mask: &[f32]) -> Vec<f32> {
        let (steps, e) = (ids.len(), self.embed);
        let zeros = vec![0.0; e];
        let x: Vec<f32> = (ids.iter())
            .flat_map(|&id| {
                let row = usize::try_from(id).ok().map(|id| id * e..(id + 1) * e);
                row.and_then(|r| self.embedding.get(r)).unwrap_or(&zeros)
            })
            .copied()
            .collect();
        // Past the last token the forward states are masked out of both poolings (a caption
        // of padding only needs them all: its max is over padding).
        let last = mask
            .iter()
            .rposition(|&m| m != 0.0)
            .map_or(steps, |t| t + 1);
        let forward = self.forward.run(&x, steps, 0..last);
        let reverse = self.reverse.run(&x, steps, (0..steps).rev());
        let hidden = forward.len() / steps.max(1);
        let count = mask.iter().sum::<f32>().max(1.0);
        let mut bag = vec![0.0; e];
        let mut mean = vec![0.0; 2 * hidden];
        let mut max = vec![f32::NEG_INFINITY; 2 * hidden];
        for (t, &m) in mask.iter().enumerate() {
            bag.iter_mut()
                .zip(&x[t * e..(t + 1) * e])
                .for_each(|(b, v)| *b += v * m);
            let states = [&forward, &reverse].map(|s| &s[t * hidden..(t + 1) * hidden]);
            let both = states[0].iter().chain(states[1]).enumerate();
            for (j, &v) in both.filter(|&(j, _)| t < last || j >= hidden) {
                mean[j] += v * m;
                max[j] = max[j].max(v + (m - 1.0) * 1e4);
            }
        }
        bag.iter_mut().chain(&mut mean).for_each(|v| *v /= count);
        [bag, mean, max].concat()
    }
}
