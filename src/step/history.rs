//! The loss history: per batch of a pass, its loss sums (recon, kl, rows), written by
//! the step's reduction into a device buffer and read back in order, waiting or not.

use super::Net;
use crate::model::ModelKind;
use anyhow::Result;

/// `sums` continued with history slots `v` (recon sum, kl sum, rows, and 0 or the
/// importance-weighted loss sum each), of an importance-weighted model where `iwae`.
fn add_slots(sums: LossSums, v: &[f32], iwae: bool) -> LossSums {
    let mut s = sums;
    for slot in v.chunks(4) {
        s.recon += slot[0] as f64;
        s.kl += slot[1] as f64;
        s.images += slot[2] as f64;
        s.bound += slot[3] as f64;
    }
    s.iwae = iwae;
    s
}

/// A loss-history read under way (`Net::request_history`): slots up to `n`, to be
/// added to `base`.
pub(crate) struct PendingHistory {
    read: crate::gpu::Readback,
    n: usize,
    base: LossSums,
    iwae: bool,
}

/// Sums over a pass of the data, in nats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSums {
    pub recon: f64,
    pub kl: f64,
    /// Rows summed: images times Monte-Carlo samples.
    pub images: f64,
    /// Importance-weighted models: the images' losses -log (1/K) sum_k w_k, each summed
    /// once per row (K times).
    pub bound: f64,
    /// Whether the objective is the importance-weighted bound (`loss` is it, and recon and
    /// kl are the ELBO's terms at the same draws, the KL estimated from them).
    pub iwae: bool,
}

impl LossSums {
    /// The objective per image: -ELBO with the given KL weight, or the importance-weighted
    /// bound's loss (its KL weight is in the sums).
    pub fn loss(&self, beta: f64) -> f64 {
        if self.iwae {
            return self.bound / self.images.max(1.0);
        }
        (self.recon + beta * self.kl) / self.images.max(1.0)
    }
    pub fn recon_per_image(&self) -> f64 {
        self.recon / self.images.max(1.0)
    }
    pub fn kl_per_image(&self) -> f64 {
        self.kl / self.images.max(1.0)
    }
}

impl Net<'_> {
    /// Reads the loss sums of history slots 0..n.
    pub fn read_history(&self, n: usize) -> Result<LossSums> {
        self.read_history_from(0, n, LossSums::default())
    }

    /// Continues `sums` with history slots start..n, in order (a resumed epoch adds
    /// exactly what the uninterrupted one would have). Waits for the GPU to finish what
    /// was submitted; `request_history` does not.
    pub fn read_history_from(&self, start: usize, n: usize, sums: LossSums) -> Result<LossSums> {
        let n = n.min(self.history_slots);
        if start >= n {
            return Ok(sums);
        }
        Ok(add_slots(sums, &self.gpu.read_f32(&self.history, start * 4, (n - start) * 4)?, self.iwae))
    }

    /// Starts reading history slots start..n (continuing `base`) without waiting: the copy
    /// runs after the steps submitted so far, and `poll_history` gives the sums once the
    /// GPU has reached it. So logging does not drain the queue: on lavapipe, a blocking
    /// read every 25 steps made an MLP epoch about 10% slower. One read is in flight at a
    /// time: while one is, this does nothing and returns false.
    pub fn request_history(&self, start: usize, n: usize, base: LossSums) -> bool {
        let mut pending = self.pending_history.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(self.history_slots);
        if pending.is_some() || start >= n {
            return false;
        }
        let read = self.gpu.read_buffer_later(&self.history, (start * 16) as u64, ((n - start) * 16) as u64);
        *pending = Some(PendingHistory { read, n, base, iwae: self.iwae });
        true
    }

    /// The read `request_history` started, once the GPU has reached it: the number of steps
    /// it covers (its `n`) and their sums. None while it is under way or when none is.
    /// Never waits.
    pub fn poll_history(&self) -> Result<Option<(usize, LossSums)>> {
        let mut pending = self.pending_history.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.as_ref() else { return Ok(None) };
        let bytes = self.gpu.poll_read(&p.read);
        // spent when it has data or failed
        let Some(bytes) = bytes.inspect_err(|_| *pending = None)? else { return Ok(None) };
        let p = pending.take().unwrap();
        Ok(Some((p.n, add_slots(p.base, &bytemuck::pod_collect_to_vec::<u8, f32>(&bytes), p.iwae))))
    }

    /// Drops the history read in flight, if any (its slots are about to be rewritten).
    pub fn cancel_history(&self) {
        *self.pending_history.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Per-batch losses (the objective per image) of history slots 0..n.
    pub fn batch_losses(&self, n: usize) -> Result<Vec<f32>> {
        let v = self.gpu.read_f32(&self.history, 0, n.min(self.history_slots) * 4)?;
        let beta = if self.model.config.kind == ModelKind::Ae { 0.0 } else { self.beta };
        let loss = |s: &[f32]| if self.iwae { s[3] } else { s[0] + beta * s[1] };
        Ok(v.chunks(4).map(|s| loss(s) / s[2].max(1.0)).collect())
    }
}
