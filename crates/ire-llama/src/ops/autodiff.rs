//! [`IreOps`] for `Autodiff<B>`: each fused op is one node of Burn's autodiff graph whose
//! backward calls the inner backend's hand-written backward (Burn's backend-extension pattern:
//! `Backward` + `OpsKind`). The inner backend's forward runs once; what the backward needs is
//! kept as the node's state (inputs are shared, not copied).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use super::profile::{timed, Section};
use super::{CeOutput, CeTarget, IreOps};

/// Registers each `(parent, grad)` pair whose parent wants a gradient.
macro_rules! give {
    ($grads:expr, $( $parent:expr => $grad:expr ),+ $(,)?) => {
        $( if let Some(node) = $parent { $grads.register::<B>(node.id, $grad); } )+
    };
}

#[derive(Debug)]
struct LinearBackward;

impl<B: IreOps> Backward<B, 2> for LinearBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dw) = timed(Section::LinearBackward, || B::ire_linear_backward(x, w, dy));
        let [px, pw] = ops.parents;
        give!(grads, px => dx, pw => dw);
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl<B: IreOps> Backward<B, 2> for RmsNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, r) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dw) = timed(Section::NormBackward, || {
            B::ire_rms_norm_backward(x, w, r, dy)
        });
        let [px, pw] = ops.parents;
        give!(grads, px => dx, pw => dw);
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl<B: IreOps> Backward<B, 2> for SwigluBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dgate, dup) = timed(Section::SwigluBackward, || {
            B::ire_swiglu_backward(gate, up, dy)
        });
        let [pg, pu] = ops.parents;
        give!(grads, pg => dgate, pu => dup);
    }
}

/// q, k, v, cos, sin, y, lse.
type AttentionState<B> = [FloatTensor<B>; 7];

#[derive(Debug)]
struct AttentionBackward;

impl<B: IreOps> Backward<B, 3> for AttentionBackward {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q, k, v, cos, sin, y, lse] = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dq, dk, dv) = timed(Section::AttentionBackward, || {
            B::ire_attention_backward(q, k, v, cos, sin, y, lse, dy)
        });
        let [pq, pk, pv] = ops.parents;
        give!(grads, pq => dq, pk => dk, pv => dv);
    }
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: IreOps> Backward<B, 2> for CrossEntropyBackward {
    /// `∂loss/∂h` and `∂loss/∂w`, computed with the forward.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gh, gw) = ops.state;
        // The loss is a scalar: the chain rule only scales the saved gradients.
        let g = grads.consume::<B>(&ops.node);
        let scale = |x: FloatTensor<B>| {
            use burn::tensor::TensorMetadata;
            let rank = x.shape().num_dims();
            let mut g = B::float_reshape(g.clone(), vec![1; rank].into());
            if g.dtype() != x.dtype() {
                // Mixed precision: the f32 loss's gradient scales bf16 gradients.
                g = B::float_cast(g, x.dtype().into());
            }
            B::float_mul(x, g)
        };
        let [ph, pw] = ops.parents;
        let (gh, gw) = timed(Section::LossBackward, || (scale(gh), scale(gw)));
        give!(grads, ph => gh, pw => gw);
    }
}

impl<B: IreOps, C: CheckpointStrategy> IreOps for Autodiff<B, C> {
    fn ire_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = LinearBackward.prepare::<C>([x.node.clone(), w.node.clone()]);
        let y = timed(Section::LinearForward, || {
            B::ire_linear(x.primitive.clone(), w.primitive.clone())
        });
        match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn ire_rms_norm(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let prep = RmsNormBackward.prepare::<C>([x.node.clone(), w.node.clone()]);
        let (y, r) = timed(Section::NormForward, || {
            B::ire_rms_norm(x.primitive.clone(), w.primitive.clone(), eps)
        });
        let y = match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive, r.clone()), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, untracked::<B, C>(r))
    }

    fn ire_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = SwigluBackward.prepare::<C>([gate.node.clone(), up.node.clone()]);
        let y = timed(Section::SwigluForward, || {
            B::ire_swiglu(gate.primitive.clone(), up.primitive.clone())
        });
        match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((gate.primitive, up.primitive), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn ire_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let prep = AttentionBackward.prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()]);
        let (y, lse) = timed(Section::AttentionForward, || {
            B::ire_attention(
                q.primitive.clone(),
                k.primitive.clone(),
                v.primitive.clone(),
                cos.primitive.clone(),
                sin.primitive.clone(),
            )
        });
        let out = match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = [
                    q.primitive,
                    k.primitive,
                    v.primitive,
                    cos.primitive,
                    sin.primitive,
                    y.clone(),
                    lse.clone(),
                ];
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (out, untracked::<B, C>(lse))
    }

    fn ire_cross_entropy(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        target: CeTarget<Self>,
        _grads: bool,
    ) -> CeOutput<Self> {
        let target = match target {
            CeTarget::Labels(labels) => CeTarget::Labels(labels),
            CeTarget::Sample(u) => CeTarget::Sample(u.primitive),
        };
        let prep = CrossEntropyBackward.prepare::<C>([h.node.clone(), w.node.clone()]);
        let (loss, labels) = match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = timed(Section::Loss, || {
                    B::ire_cross_entropy(h.primitive, w.primitive, target, true)
                });
                let state = (
                    out.grad_h.expect("gradients were asked for"),
                    out.grad_w.expect("gradients were asked for"),
                );
                (prep.finish(state, out.loss), out.labels)
            }
            OpsKind::UnTracked(prep) => {
                let out = timed(Section::Loss, || {
                    B::ire_cross_entropy(h.primitive, w.primitive, target, false)
                });
                (prep.finish(out.loss), out.labels)
            }
        };
        CeOutput {
            loss,
            grad_h: None,
            grad_w: None,
            labels,
        }
    }

    fn ire_linear_backward(
        _x: FloatTensor<Self>,
        _w: FloatTensor<Self>,
        _dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the autodiff graph calls the inner backend's backward")
    }

    fn ire_rms_norm_backward(
        _x: FloatTensor<Self>,
        _w: FloatTensor<Self>,
        _r: FloatTensor<Self>,
        _dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the autodiff graph calls the inner backend's backward")
    }

    fn ire_swiglu_backward(
        _gate: FloatTensor<Self>,
        _up: FloatTensor<Self>,
        _dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the autodiff graph calls the inner backend's backward")
    }

    fn ire_attention_backward(
        _q: FloatTensor<Self>,
        _k: FloatTensor<Self>,
        _v: FloatTensor<Self>,
        _cos: FloatTensor<Self>,
        _sin: FloatTensor<Self>,
        _y: FloatTensor<Self>,
        _lse: FloatTensor<Self>,
        _dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the autodiff graph calls the inner backend's backward")
    }
}

/// A side output (RMSNorm's `r`, attention's log-sum-exp) as a constant of the graph.
fn untracked<B: IreOps, C: CheckpointStrategy>(x: FloatTensor<B>) -> FloatTensor<Autodiff<B, C>> {
    <Autodiff<B, C> as AutodiffBackend>::from_inner(x)
}
