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

    /// ImageNet logits `[batch, 1000]`; `None` when built without the classifier.
    pub fn classify(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        let classifier = self.classifier.as_ref()?;
        Some(classifier.forward(self.forward(images)))
    }
}
