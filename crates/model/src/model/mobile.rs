//! ImageNet-pretrained mobile CNNs: torchvision's MobileNetV2 and EfficientNet-Lite0. Both are
//! stacks of inverted residual blocks (1x1 expand → depthwise conv → 1x1 linear projection) with
//! ReLU6, a 1x1 conv to 1280 channels and global average pooling; they differ in kernel sizes,
//! widths, padding and batch-norm epsilon. Module names follow the blocks; the trainer maps the
//! original checkpoints' keys onto them.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use std::cell::RefCell;
use std::sync::Arc;

use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::cpu::mobile::{self as mobile_cpu, CpuMobile, Pad};
use super::cpu::{each, take};

/// Width of the pooled feature vector both networks produce.
pub const FEATURES: usize = 1280;
/// ImageNet-1k classes of the original classifiers (kept only to prove the port is faithful).
pub const IMAGENET_CLASSES: usize = 1000;

/// How a network pads its convolutions.
#[derive(Clone, Copy, Debug)]
enum Padding {
    /// `(k - 1) / 2` on every side (torchvision).
    Symmetric,
    /// TensorFlow's "same": the output is `ceil(input / stride)`, the odd pixel padded at the
    /// bottom/right (EfficientNet-Lite's weights come from TensorFlow).
    Same,
}

/// Conv → batch norm → optional ReLU6.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
    relu6: bool,
    /// The batch norm is folded into the convolution ([`ConvBn::fold_norm`]) and skipped.
    folded: bool,
}

struct ConvSpec {
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    depthwise: bool,
    relu6: bool,
}

impl ConvBn {
    fn new(spec: ConvSpec, padding: Padding, eps: f64, device: &Device) -> Self {
        let ConvSpec {
            channels,
            kernel,
            stride,
            depthwise,
            relu6,
        } = spec;
        let pad = (kernel - 1) / 2;
        let padding = match padding {
            Padding::Symmetric => PaddingConfig2d::Explicit(pad, pad, pad, pad),
            Padding::Same => PaddingConfig2d::Same,
        };
        let mut conv = Conv2dConfig::new(channels, [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(padding)
            .with_bias(false);
        if depthwise {
            conv = conv.with_groups(channels[0]);
        }
        Self {
            conv: conv.init(device),
            bn: BatchNormConfig::new(channels[1])
                .with_epsilon(eps)
                .init(device),
            relu6,
            folded: false,
        }
    }

    /// Batch norm in inference mode is `conv(x)·s + (β − μ·s)` per channel, with
    /// `s = γ / √(σ² + ε)`: a convolution with filters scaled by `s` and that shift as its bias.
    /// One pass over the activations instead of the conv's and the norm's four.
    fn fold_norm(self) -> Self {
        if self.folded {
            return self;
        }
        let Self {
            mut conv,
            bn,
            relu6,
            ..
        } = self;
        let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
        let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
        let bias = match &conv.bias {
            Some(bias) => bias.val() * scale.clone() + shift,
            None => shift,
        };
        let [out, ..] = conv.weight.dims();
        let weight = conv.weight.val() * scale.reshape([out, 1, 1, 1]);
        conv.weight = Param::from_tensor(weight);
        conv.bias = Some(Param::from_tensor(bias));
        Self {
            conv,
            bn,
            relu6,
            folded: true,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_profiled(x, &mut |_| {})
    }

    fn forward_profiled(
        &self,
        x: Tensor<4>,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<4> {
        let x = self.conv.forward(x);
        step(self.conv_kind());
        if self.folded {
            return self.activate(x, step);
        }
        let x = self.bn.forward(x);
        step("batch norm");
        self.activate(x, step)
    }

    fn activate(&self, x: Tensor<4>, step: &mut (dyn FnMut(&'static str) + Send)) -> Tensor<4> {
        if self.relu6 {
            let x = x.clamp(0.0, 6.0);
            step("relu6");
            x
        } else {
            x
        }
    }

    /// This (folded) convolution's weights moved into [`mobile_cpu`]'s copy.
    fn into_cpu(mut self) -> (Self, mobile_cpu::Conv) {
        let [outputs, per_group, k, _] = self.conv.weight.dims();
        let bias = self.conv.bias.take().map(|mut b| take(&mut b));
        let cpu = mobile_cpu::Conv {
            weight: take(&mut self.conv.weight),
            bias: bias.unwrap_or_else(|| vec![0.0; outputs]),
            channels: [per_group * self.conv.groups, outputs],
            kernel: k,
            stride: self.conv.stride[0],
            pad: match self.conv.padding {
                PaddingConfig2d::Explicit(p, ..) => Pad::Fixed(p),
                _ => Pad::Same,
            },
            relu6: self.relu6,
        };
        (self, cpu)
    }

    /// What the profile calls this layer's convolution.
    fn conv_kind(&self) -> &'static str {
        match (
            self.conv.groups > 1,
            self.conv.kernel_size[0],
            self.conv.stride[0],
        ) {
            (true, _, 1) => "depthwise conv, stride 1",
            (true, _, _) => "depthwise conv, stride 2",
            (false, 1, _) => "pointwise (1x1) conv",
            (false, _, _) => "stem conv (3x3)",
        }
    }
}

/// Expand (1x1, ReLU6; absent when the expansion ratio is 1) → depthwise k×k (ReLU6) →
/// project (1x1, linear), with a skip connection when shape is kept.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

/// One stage of a network: expansion ratio, kernel, output channels, repeats, first stride.
struct Stage {
    expand: usize,
    kernel: usize,
    out: usize,
    repeats: usize,
    stride: usize,
}

const fn stage(expand: usize, kernel: usize, out: usize, repeats: usize, stride: usize) -> Stage {
    Stage {
        expand,
        kernel,
        out,
        repeats,
        stride,
    }
}

impl InvertedResidual {
    fn map_convs(self, f: &impl Fn(ConvBn) -> ConvBn) -> Self {
        Self {
            expand: self.expand.map(f),
            depthwise: f(self.depthwise),
            project: f(self.project),
            residual: self.residual,
        }
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.forward_profiled(input, &mut |_| {})
    }

    fn forward_profiled(
        &self,
        input: Tensor<4>,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<4> {
        let x = match &self.expand {
            Some(expand) => expand.forward_profiled(input.clone(), step),
            None => input.clone(),
        };
        let x = self.depthwise.forward_profiled(x, step);
        let x = self.project.forward_profiled(x, step);
        if self.residual {
            let x = x + input;
            step("residual add");
            x
        } else {
            x
        }
    }
}

/// Stem conv → inverted residual blocks → 1x1 conv to 1280 → global average pool; optionally
/// the original ImageNet classifier.
#[derive(Module, Debug)]
pub struct MobileCnn {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
    classifier: Option<Linear>,
    /// The same network for [`mobile_cpu`]'s kernels, used on the flex CPU backend once
    /// [`MobileCnn::for_inference`] has built it.
    #[module(skip)]
    cpu: Option<Arc<CpuMobile>>,
}

impl MobileCnn {
    fn new(
        stages: &[Stage],
        padding: Padding,
        eps: f64,
        classifier: bool,
        device: &Device,
    ) -> Self {
        let conv = |channels, kernel, stride, depthwise, relu6| {
            let spec = ConvSpec {
                channels,
                kernel,
                stride,
                depthwise,
                relu6,
            };
            ConvBn::new(spec, padding, eps, device)
        };
        let stem_width = 32;
        let mut blocks = Vec::new();
        let mut width = stem_width;
        for s in stages {
            for i in 0..s.repeats {
                let stride = if i == 0 { s.stride } else { 1 };
                let hidden = width * s.expand;
                blocks.push(InvertedResidual {
                    expand: (s.expand != 1).then(|| conv([width, hidden], 1, 1, false, true)),
                    depthwise: conv([hidden, hidden], s.kernel, stride, true, true),
                    project: conv([hidden, s.out], 1, 1, false, false),
                    residual: stride == 1 && width == s.out,
                });
                width = s.out;
            }
        }
        Self {
            stem: conv([3, stem_width], 3, 2, false, true),
            blocks,
            head: conv([width, FEATURES], 1, 1, false, true),
            classifier: classifier
                .then(|| LinearConfig::new(FEATURES, IMAGENET_CLASSES).init(device)),
            cpu: None,
        }
    }

    /// torchvision's MobileNetV2 (width 1.0): BN eps 1e-5, symmetric padding.
    pub fn mobilenet_v2(classifier: bool, device: &Device) -> Self {
        const STAGES: [Stage; 7] = [
            stage(1, 3, 16, 1, 1),
            stage(6, 3, 24, 2, 2),
            stage(6, 3, 32, 3, 2),
            stage(6, 3, 64, 4, 2),
            stage(6, 3, 96, 3, 1),
            stage(6, 3, 160, 3, 2),
            stage(6, 3, 320, 1, 1),
        ];
        Self::new(&STAGES, Padding::Symmetric, 1e-5, classifier, device)
    }

    /// EfficientNet-Lite0: no squeeze-excite, ReLU6, fixed stem/head, BN eps 1e-3, "same" padding.
    pub fn efficientnet_lite0(classifier: bool, device: &Device) -> Self {
        const STAGES: [Stage; 7] = [
            stage(1, 3, 16, 1, 1),
            stage(6, 3, 24, 2, 2),
            stage(6, 5, 40, 2, 2),
            stage(6, 3, 80, 3, 2),
            stage(6, 5, 112, 3, 1),
            stage(6, 5, 192, 4, 2),
            stage(6, 3, 320, 1, 1),
        ];
        Self::new(&STAGES, Padding::Same, 1e-3, classifier, device)
    }

    /// Normalised pictures `[batch, 3, h, w]` → pooled features `[batch, 1280]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_profiled(images, &mut |_| {})
    }

    /// [`Self::forward`], naming each operation to `step` once it is done: the bench's
    /// per-layer profile (the CPU backend computes eagerly, so the time between two calls is
    /// the operation's).
    pub fn forward_profiled(
        &self,
        images: Tensor<4>,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<2> {
        match &self.cpu {
            Some(cpu) => forward_cpu(cpu, images, step),
            None => self.forward_burn(images, step),
        }
    }

    fn forward_burn(
        &self,
        images: Tensor<4>,
        step: &mut (dyn FnMut(&'static str) + Send),
    ) -> Tensor<2> {
        let x = self.stem.forward_profiled(images, step);
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward_profiled(x, step));
        let x = self.head.forward_profiled(x, step);
        let pooled = x.mean_dim(3).mean_dim(2).flatten(1, 3);
        step("global average pool");
        pooled
    }

    /// For inference: every batch norm folded into its convolution ([`ConvBn::fold_norm`]).
    /// Not for training: the folded network's norms no longer learn or update.
    pub fn fold_norms(self) -> Self {
        self.map_convs(&ConvBn::fold_norm)
    }

    /// For the classifier on the flex CPU backend, after loading: batch norms folded
    /// ([`Self::fold_norms`]) and the weights moved into [`mobile_cpu`]'s kernels, which
    /// `forward` then uses. The Burn layers are left empty: not for training, nor for another
    /// device.
    pub fn for_inference(self) -> Self {
        // A convolution at a time: folded, then its weights moved out, so the network is
        // never held twice. The batch norms stay (a few kilobytes).
        let taken = RefCell::new(Vec::new());
        let released = self.map_convs(&|c: ConvBn| {
            let (c, cpu) = c.fold_norm().into_cpu();
            taken.borrow_mut().push(cpu);
            c
        });
        // map_convs' order: the stem, each block's expand, depthwise, project, the head.
        let mut convs = taken.into_inner().into_iter();
        let mut next = || convs.next().expect("one kernel copy per convolution");
        let stem = next();
        let blocks = (released.blocks.iter())
            .map(|b| mobile_cpu::Block {
                expand: b.expand.as_ref().map(|_| next()),
                depthwise: next(),
                project: next(),
                residual: b.residual,
            })
            .collect();
        let head = next();
        let cpu = CpuMobile { stem, blocks, head };
        Self {
            cpu: Some(Arc::new(cpu)),
            ..released
        }
    }

    fn map_convs(self, f: &impl Fn(ConvBn) -> ConvBn) -> Self {
        Self {
            stem: f(self.stem),
            blocks: self.blocks.into_iter().map(|b| b.map_convs(f)).collect(),
            head: f(self.head),
            classifier: self.classifier,
            cpu: None,
        }
    }

    /// The feature map after the stem and the blocks, before the 1x1 head conv.
    pub fn activations(&self, images: Tensor<4>) -> Tensor<4> {
        let x = self.stem.forward(images);
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }

    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Split off the top `n` blocks and the head conv, to fine-tune on cached activations of
    /// the blocks below (`n = 0`: the head conv alone). Their batch norms are frozen: a few
    /// thousand tweets' batches would drag ImageNet's statistics about.
    pub fn split_top(mut self, n: usize) -> (MobileCnn, MobileTop) {
        let keep = self.blocks.len().saturating_sub(n);
        let blocks = self.blocks.split_off(keep);
        let top = MobileTop {
            blocks,
            head: Some(self.head.clone()),
        };
        (self, top.freeze_norms())
    }

    /// Put the top (split off and trained) back on this network.
    pub fn join(mut self, top: MobileTop) -> MobileCnn {
        self.blocks.extend(top.blocks);
        if let Some(head) = top.head {
            self.head = head;
        }
        self
    }

    /// ImageNet logits `[batch, 1000]`; `None` when built without the classifier.
    pub fn classify(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        let classifier = self.classifier.as_ref()?;
        Some(classifier.forward(self.forward(images)))
    }
}

/// [`MobileCnn::forward`] through [`mobile_cpu`], a picture at a time.
fn forward_cpu(
    cpu: &CpuMobile,
    images: Tensor<4>,
    step: &mut (dyn FnMut(&'static str) + Send),
) -> Tensor<2> {
    let device = images.device();
    let [batch, _, h, w] = images.dims();
    let pixels = images
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 pictures");
    let pictures: Vec<&[f32]> = pixels.chunks_exact(pixels.len() / batch.max(1)).collect();
    let features = each(&pictures, step, |picture, step| {
        cpu.features(picture, h, w, step)
    });
    Tensor::from_data(TensorData::new(features, [batch, FEATURES]), &device)
}

/// The top blocks and head conv of a [`MobileCnn`], fine-tuned on cached activations of the
/// blocks below ([`MobileCnn::split_top`]); without blocks or head it only pools, so cached
/// pooled features (`[batch, 1280, 1, 1]`) go through it unchanged.
#[derive(Module, Debug)]
pub struct MobileTop {
    blocks: Vec<InvertedResidual>,
    head: Option<ConvBn>,
}

impl MobileTop {
    /// The pass-through: features computed beforehand, nothing to train.
    pub fn pooled() -> Self {
        Self {
            blocks: Vec::new(),
            head: None,
        }
    }

    /// Batch norm in inference mode with fixed scale and shift; the convolutions still learn.
    fn freeze_norms(self) -> Self {
        let freeze = |c: ConvBn| ConvBn {
            bn: c.bn.freeze(),
            ..c
        };
        let blocks = self.blocks.into_iter().map(|b| InvertedResidual {
            expand: b.expand.map(freeze),
            depthwise: freeze(b.depthwise),
            project: freeze(b.project),
            residual: b.residual,
        });
        Self {
            blocks: blocks.collect(),
            head: self.head.map(freeze),
        }
    }
}

impl crate::model::Encoder for MobileTop {
    type Input = Tensor<4>;

    /// Activations `[batch, c, h, w]` → pooled features `[batch, 1280]`.
    fn encode(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        let x = match &self.head {
            Some(head) => head.forward(x),
            None => x,
        };
        x.mean_dim(3).mean_dim(2).flatten(1, 3)
    }
}

#[cfg(test)]
mod tests;
