//! Each layer kind's dispatches: dense layers run the GEMMs (gemm.wgsl,
//! gemm_subgroup.wgsl, the variant `Builder::choice` names), convolutions and
//! transposed convolutions run conv.wgsl's passes (a transposed convolution's
//! passes are its convolution's in the other order). Bias and ReLU are fused in the
//! forward epilogue, the activation's derivative in the backward-input one.

use super::Builder;
use crate::gpu::Matrix;
use crate::kernels::gemm::{self, Pass};
use crate::kernels::{self, conv_slot, gemm_adam_slot, gemm_slot, Bind, Dispatch};
use crate::model::{Activation, ConvShape, Layer, Op};
use Bind::{Buffer as B, Texture as T};

/// The `Gemm` uniform of dense layer `l` at m rows, with activation `act` in its epilogue
/// (forward: applied; backward-input: its derivative taken).
pub(crate) fn gemm_params(l: &Layer, m: usize, act: Activation) -> kernels::Gemm {
    let (n, k) = l.gemm_nk();
    kernels::Gemm {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        act: act.code(),
        bias: l.b as u32,
        grad_w: l.w as u32,
        stride: l.stride as u32,
        grad_b: l.b as u32,
    }
}

fn conv_params(l: &Layer, m: usize, epilogue: u32, act: Activation, bias_of: u32) -> kernels::Conv {
    kernels::Conv {
        act: act.code(),
        bias: l.b as u32,
        grad_w: l.w as u32,
        w_stride: l.stride as u32,
        grad_b: l.b as u32,
        bias_of,
        ..kernels::Conv::new(&l.conv_shape(), m, epilogue)
    }
}

/// "<entry point> <layer>": the profiler's row names.
pub(crate) fn label(l: &Layer, entry: &str) -> String {
    format!("{entry} {}", l.name)
}

fn shape_text(s: &ConvShape) -> String {
    format!("{}x{}x{}>{}x{}x{} k{}s{}", s.in_h, s.in_w, s.in_c, s.out_h, s.out_w, s.out_c, s.kernel, s.stride)
}

fn conv_flops(s: &ConvShape, m: usize) -> f64 {
    2.0 * (m * s.out_h * s.out_w * s.out_c * s.in_c * s.kernel * s.kernel) as f64
}

impl Builder<'_> {
    fn gemm(&self, pass: Pass, l: &Layer, binds: &[(u32, Bind)]) -> Dispatch {
        let (n, k) = l.gemm_nk();
        if let Some(pref) = self.choose.filter(|_| !self.choice.borrow().has(pass, self.m, n, k)) {
            match gemm::choose(self.gpu, self.k, pref, &[(pass, self.m, n, k)]) {
                Ok(made) => self.choice.borrow_mut().merge(made),
                // a forced variant the adapter lacks was refused before the build
                Err(e) => {
                    eprintln!("warning: choosing the GEMM of {} failed ({e:#}); it runs the texel kernel", l.name)
                }
            }
        }
        let v = self.choice.borrow().get(pass, self.m, n, k);
        gemm::dispatch(self.gpu, self.k, pass, v, label(l, pass.entry()), binds, self.m, n, k)
    }

    /// A conv.wgsl dispatch of `entry` for layer `l`; `binds` as conv_common.wgsl's.
    fn conv(&mut self, l: &Layer, entry: &'static str, binds: &[(u32, Bind)]) -> Vec<Dispatch> {
        let (s, m) = (l.conv_shape(), self.m);
        let variant = kernels::conv_variant(self.k, entry, &s);
        let pass = kernels::conv_dispatch(self.gpu, self.k, entry, variant, &l.name, binds, &s, m);
        self.taps = pass.taps;
        let shape = format!("{} m={m}", shape_text(&s));
        // the multiply-adds' cost goes with the dispatch that does them
        pass.dispatches
            .into_iter()
            .enumerate()
            .map(|(i, d)| d.with_cost(shape.clone(), if i == pass.main { conv_flops(&s, m) } else { 0.0 }, 0.0))
            .collect()
    }

    /// y = act(layer(x)), bias and activation fused (one dispatch, or more where the variant
    /// splits the pass: `kernels::ConvVariant::SplitC1`).
    pub fn forward(&mut self, l: &Layer, x: &Matrix, w: &Matrix, y: &Matrix) -> Vec<Dispatch> {
        use gemm_slot::*;
        // `taps` then tells of this layer's pass alone
        self.taps = None;
        let (m, params) = (self.m, self.params);
        match l.op {
            Op::Dense => {
                let u = self.uniform(&gemm_params(l, m, l.act));
                let binds = [(P, B(&u)), (LHS, T(&x.view)), (RHS, T(&w.view)), (OUT, T(&y.view)), (PARAMS, B(params))];
                vec![self.gemm(Pass::Forward, l, &binds)]
            }
            Op::Conv { .. } | Op::Deconv { .. } => {
                use conv_slot::*;
                // a transposed convolution runs the backward-input pass of its convolution
                let entry = if matches!(l.op, Op::Conv { .. }) { "conv2d_forward" } else { "conv2d_backward_input" };
                let epi = if l.act.is_some() { kernels::EPILOGUE_BIAS_ACT } else { kernels::EPILOGUE_BIAS };
                let u = self.uniform(&conv_params(l, m, epi, l.act, 0));
                let binds = [
                    (P, B(&u)),
                    (LHS, T(&x.view)),
                    (RHS, T(&w.view)),
                    (MASK, T(&x.view)),
                    (OUT, T(&y.view)),
                    (PARAMS, B(params)),
                ];
                self.conv(l, entry, &binds)
            }
        }
    }

    /// A layer's backward passes from dy (the gradient of its pre-activation): its input
    /// gradient into `dx.0` where `dx` is given (through the activation `dx.1` that made its
    /// input),
    /// then dW and db. Backward-input comes first: with Adam fused, backward-weight
    /// updates the weights it reads. (Both passes of a dense layer in one dispatch, their
    /// grids side by side, was slower on lavapipe: docs/PERFORMANCE.md.)
    pub fn backward(
        &mut self,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        dy: &Matrix,
        dx: Option<(&Matrix, Activation)>,
    ) -> Vec<Dispatch> {
        let mut list = Vec::new();
        if let Some((dx, act)) = dx {
            list.extend(self.backward_input(l, x, w, dy, dx, act));
        }
        list.extend(self.backward_weight(l, x, w, dy));
        list
    }

    /// dW and db of a layer from d out (gradient of its pre-activation) and its input x,
    /// into the flat gradient; or, with Adam fused in (`Fusions::adam`), the layer's
    /// parameters, moments and weight texture `w` updated in place.
    pub fn backward_weight(&mut self, l: &Layer, x: &Matrix, w: &Matrix, dy: &Matrix) -> Vec<Dispatch> {
        let m = self.m;
        match l.op {
            Op::Dense => {
                use gemm_slot::{GRADS, LHS, P, RHS};
                let u = self.uniform(&gemm_params(l, m, Activation::Identity));
                if let Some(f) = self.fused_adam {
                    use gemm_adam_slot::*;
                    let binds = [
                        (P, B(&u)),
                        (LHS, T(&dy.view)),
                        (RHS, T(&x.view)),
                        (ADAM, B(f.adam)),
                        (STEP, B(f.step)),
                        (PARAMS_RW, B(self.params)),
                        (MOMENT1, f.moments[0]),
                        (MOMENT2, f.moments[1]),
                        (WEIGHTS, T(&w.view)),
                    ];
                    let (n, k) = l.gemm_nk();
                    let name = label(l, "gemm_backward_weight_adam");
                    return vec![gemm::dispatch_backward_weight_adam(self.gpu, f.kernel, name, &binds, m, n, k)];
                }
                vec![self.gemm(
                    Pass::BackwardWeight,
                    l,
                    &[(P, B(&u)), (LHS, T(&dy.view)), (RHS, T(&x.view)), (GRADS, B(self.grads()))],
                )]
            }
            Op::Conv { .. } | Op::Deconv { .. } => {
                use conv_slot::*;
                // a transposed convolution is the convolution from its output to its input
                let (lhs, rhs, bias_of) = if matches!(l.op, Op::Conv { .. }) { (dy, x, 0) } else { (x, dy, 1) };
                let u = self.uniform(&conv_params(l, m, kernels::EPILOGUE_NONE, Activation::Identity, bias_of));
                let binds = [(P, B(&u)), (LHS, T(&lhs.view)), (RHS, T(&rhs.view)), (GRADS, B(self.grads()))];
                self.conv(l, "conv2d_backward_weight", &binds)
            }
        }
    }

    /// d input of a layer, times act'(x) where its input x came out of activation `act`.
    pub fn backward_input(
        &mut self,
        l: &Layer,
        x: &Matrix,
        w: &Matrix,
        dy: &Matrix,
        dx: &Matrix,
        act: Activation,
    ) -> Vec<Dispatch> {
        use gemm_slot::*;
        let (m, params) = (self.m, self.params);
        match l.op {
            Op::Dense => {
                let u = self.uniform(&gemm_params(l, m, act));
                let binds = [(P, B(&u)), (LHS, T(&dy.view)), (RHS, T(&w.view)), (MASK, T(&x.view)), (OUT, T(&dx.view))];
                vec![self.gemm(Pass::BackwardInput, l, &binds)]
            }
            Op::Conv { .. } | Op::Deconv { .. } => {
                // and a transposed convolution's input gradient is its convolution's forward pass
                let entry = if matches!(l.op, Op::Conv { .. }) { "conv2d_backward_input" } else { "conv2d_forward" };
                let epi = if act.is_some() { kernels::EPILOGUE_ACT_GRAD } else { kernels::EPILOGUE_NONE };
                let u = self.uniform(&conv_params(l, m, epi, act, 0));
                let binds = [
                    (P, B(&u)),
                    (LHS, T(&dy.view)),
                    (RHS, T(&w.view)),
                    (MASK, T(&x.view)),
                    (OUT, T(&dx.view)),
                    (PARAMS, B(params)),
                ];
                self.conv(l, entry, &binds)
            }
        }
    }
}
