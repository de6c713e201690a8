//! Learning-rate schedule: linear warm-up from 0 to the peak, then a decay to
//! `min_ratio * peak` at the last step.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    #[default]
    Linear,
    Cosine,
    Constant,
}

impl std::str::FromStr for Decay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            "constant" => Ok(Self::Constant),
            other => Err(format!(
                "unknown decay {other:?} (expected linear, cosine or constant)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
    pub min_ratio: f64,
}

impl LrSchedule {
    /// Learning rate for optimizer step `step` (1-based: the first update uses step 1).
    pub fn lr(&self, step: u64) -> f64 {
        if step <= self.warmup_steps && self.warmup_steps > 0 {
            return self.peak_lr * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps.min(step)) as f64 / span).min(1.0);
        let factor = match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - progress,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        self.peak_lr * (self.min_ratio + (1.0 - self.min_ratio) * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(decay: Decay) -> LrSchedule {
        LrSchedule {
            peak_lr: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
            decay,
            min_ratio: 0.0,
        }
    }

    #[test]
    fn warms_up_linearly_then_decays_to_min() {
        for decay in [Decay::Linear, Decay::Cosine] {
            let s = sched(decay);
            assert!((s.lr(5) - 5e-4).abs() < 1e-12);
            assert!((s.lr(10) - 1e-3).abs() < 1e-12);
            assert!((s.lr(60) - 5e-4).abs() < 1e-12, "{decay:?} midpoint");
            assert!(s.lr(110).abs() < 1e-12);
            assert!(s.lr(200).abs() < 1e-12);
            assert!(s.lr(30) > s.lr(40));
        }
        assert_eq!(sched(Decay::Constant).lr(100), 1e-3);
        assert!(sched(Decay::Cosine).lr(35) > sched(Decay::Linear).lr(35));
    }
}
