//! ImageNet-pretrained mobile CNNs: torchvision's MobileNetV2 and EfficientNet-Lite0. Both are
//! stacks of inverted residual blocks (1x1 expand → depthwise conv → 1x1 linear projection) with
//! ReLU6, a 1x1 conv to 1280 channels and global average pooling; they differ in kernel sizes,
//! widths, padding and batch-norm epsilon. Module names follow the blocks; the trainer maps the
//! original checkpoints' keys onto them.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

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
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.bn.forward(self.conv.forward(x));
        if self.relu6 { x.clamp(0.0, 6.0) } else { x }
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
    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = match &self.expand {
            Some(expand) => expand.forward(input.clone()),
            None => input.clone(),
        };
        let x = self.project.forward(self.depthwise.forward(x));
        if self.residual { x + input } else { x }
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
        let x = self.stem.forward(images);
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        let x = self.head.forward(x);
        x.mean_dim(3).mean_dim(2).flatten(1, 3)
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
mod tests {
    use super::*;
    use crate::model::Encoder;
    use burn::tensor::{Distribution, Tolerance};

    fn pictures(device: &Device) -> Tensor<4> {
        Tensor::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn a_split_network_computes_what_the_whole_one_does() {
        let device = Device::flex();
        let cnn = MobileCnn::mobilenet_v2(false, &device);
        let whole = cnn.forward(pictures(&device)).into_data();
        let (lower, top) = cnn.split_top(2);
        assert_eq!(lower.blocks(), 15);
        let split = top.encode(lower.activations(pictures(&device)));
        whole.assert_approx_eq::<f32>(&split.into_data(), Tolerance::default());
        let joined = lower.join(top);
        assert_eq!(joined.blocks(), 17);
        let again = joined.forward(pictures(&device)).into_data();
        whole.assert_approx_eq::<f32>(&again, Tolerance::default());
        // Without blocks or head the top only pools: cached features pass unchanged.
        let features = Tensor::<4>::random([2, FEATURES, 1, 1], Distribution::Default, &device);
        let pooled = MobileTop::pooled().encode(features.clone());
        pooled
            .into_data()
            .assert_eq(&features.flatten::<2>(1, 3).into_data(), true);
    }

    #[test]
    fn the_split_off_tops_batch_norms_are_frozen() {
        let device = Device::flex();
        let (_, top) = MobileCnn::mobilenet_v2(false, &device).split_top(1);
        let head = top.head.as_ref().unwrap();
        // Inference statistics even on a training device (the trainer's test checks that the
        // convolutions get gradients there and the features match inference mode).
        assert!(!head.bn.training.is_enabled());
        assert!(!top.blocks[0].project.bn.training.is_enabled());
    }
}
