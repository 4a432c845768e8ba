//! Failure detectors, sans-IO: time arrives as microseconds from the caller's clock; the
//! detector never reads one.
//!
//! # Glossary
//! - **heartbeat**: a message that a peer sends at a steady cadence only to say it is
//!   alive (the transport's ping), recorded on arrival with [`PhiDetector::heartbeat`].
//! - **suspicion level φ**: how sure we are that a peer has failed, on a log scale:
//!   φ = −log10 P(a heartbeat arrives later than now, given the inter-arrival times
//!   seen so far). φ = 1 means a 10 % chance that it is still alive and merely late,
//!   φ = 8 one in 10⁸. The notes' "suspected, may still be alive" is exactly this: the
//!   detector never says *dead*, only how unlikely *alive* has become.
//! - **threshold**: the φ at which an operator (or, later, an engine's view change or
//!   failover) treats the peer as [`Verdict::Suspected`].
//!
//! The φ-accrual detector is Hayashibara, Défago, Yared and Katayama's (SRDS 2004):
//! inter-arrival times over a sliding window are modelled as a normal distribution; φ
//! grows continuously with the time since the last heartbeat, faster for a peer whose
//! heartbeats were regular. The normal tail uses the logistic approximation
//! 1/(1 + e^{y(1.5976 + 0.070566 y²)}), evaluated in log space so that φ stays finite
//! for any silence.
#![deny(missing_docs)]

use std::collections::VecDeque;

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhiConfig {
    /// φ at or above which a peer is suspected.
    pub threshold: f64,
    /// Inter-arrival times kept.
    pub window: usize,
    /// Floor on the standard deviation, µs: a perfectly regular peer must not be
    /// suspected after one slightly late heartbeat.
    pub min_std_dev_us: u64,
    /// Added to the mean, µs: a pause every peer may take without raising φ.
    pub acceptable_pause_us: u64,
    /// The interval assumed before any has been measured, µs (the sender's cadence).
    pub expected_interval_us: u64,
}

impl Default for PhiConfig {
    fn default() -> PhiConfig {
        PhiConfig {
            threshold: 8.0,
            window: 100,
            min_std_dev_us: 100_000,
            acceptable_pause_us: 0,
            expected_interval_us: 100_000,
        }
    }
}

/// What the detector concludes at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No heartbeat yet: nothing to judge by.
    Unknown,
    /// φ below the threshold.
    Alive,
    /// φ at or above the threshold: probably failed, possibly just slow.
    Suspected,
}

impl Verdict {
    /// A lower-case name for status pages.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Alive => "alive",
            Verdict::Suspected => "suspected",
        }
    }
}

/// The φ-accrual detector for one peer.
#[derive(Clone, Debug)]
pub struct PhiDetector {
    cfg: PhiConfig,
    intervals: VecDeque<u64>,
    sum: u128,
    sum_sq: u128,
    last: Option<u64>,
}

impl PhiDetector {
    /// A detector that has heard nothing yet.
    pub fn new(cfg: PhiConfig) -> PhiDetector {
        PhiDetector {
            cfg: PhiConfig {
                window: cfg.window.max(1),
                ..cfg
            },
            intervals: VecDeque::new(),
            sum: 0,
            sum_sq: 0,
            last: None,
        }
    }

    /// A heartbeat arrived at `now_us`. A time before the previous heartbeat (a clock
    /// that went backwards) counts as an interval of zero.
    pub fn heartbeat(&mut self, now_us: u64) {
        if let Some(last) = self.last {
            self.record(now_us.saturating_sub(last));
        }
        self.last = Some(self.last.map_or(now_us, |l| l.max(now_us)));
    }

    fn record(&mut self, interval: u64) {
        if self.intervals.len() == self.cfg.window {
            if let Some(old) = self.intervals.pop_front() {
                self.sum -= old as u128;
                self.sum_sq -= (old as u128) * (old as u128);
            }
        }
        self.intervals.push_back(interval);
        self.sum += interval as u128;
        self.sum_sq += (interval as u128) * (interval as u128);
    }

    /// Mean and standard deviation of the inter-arrival times, µs (the expected
    /// interval until one has been measured).
    pub fn interval_stats(&self) -> (f64, f64) {
        let n = self.intervals.len() as f64;
        if n == 0.0 {
            let e = self.cfg.expected_interval_us as f64;
            return (e, e / 4.0);
        }
        let mean = self.sum as f64 / n;
        let var = (self.sum_sq as f64 / n - mean * mean).max(0.0);
        (mean, var.sqrt())
    }

    /// The suspicion level at `now_us` (0 before the first heartbeat).
    pub fn phi(&self, now_us: u64) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let elapsed = now_us.saturating_sub(last) as f64;
        let (mean, std) = self.interval_stats();
        let mean = mean + self.cfg.acceptable_pause_us as f64;
        let std = std.max(self.cfg.min_std_dev_us as f64).max(1.0);
        phi_of((elapsed - mean) / std)
    }

    /// The verdict at `now_us`.
    pub fn verdict(&self, now_us: u64) -> Verdict {
        match self.last {
            None => Verdict::Unknown,
            Some(_) if self.phi(now_us) >= self.cfg.threshold => Verdict::Suspected,
            Some(_) => Verdict::Alive,
        }
    }

    /// When the last heartbeat arrived.
    pub fn last_heartbeat(&self) -> Option<u64> {
        self.last
    }
}

/// −log10 of the probability that a normal variable exceeds its mean by `y` standard
/// deviations, by the logistic approximation, without underflow.
fn phi_of(y: f64) -> f64 {
    let a = y * (1.5976 + 0.070566 * y * y);
    // P(later) = 1 / (1 + e^a); −ln P = ln(1 + e^a) = a + ln(1 + e^−a) for a > 0.
    let neg_ln_p = if a > 0.0 {
        a + (-a).exp().ln_1p()
    } else {
        a.exp().ln_1p()
    };
    neg_ln_p / std::f64::consts::LN_10
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    fn steady(cfg: PhiConfig, every: u64, n: u64) -> PhiDetector {
        let mut d = PhiDetector::new(cfg);
        for i in 0..n {
            d.heartbeat(i * every);
        }
        d
    }

    #[test]
    fn a_steady_peer_stays_below_the_threshold() {
        let d = steady(PhiConfig::default(), 100 * MS, 200);
        let last = d.last_heartbeat().unwrap();
        // At the next expected heartbeat, and even half an interval late.
        assert!(d.phi(last + 100 * MS) < 1.0, "{}", d.phi(last + 100 * MS));
        assert!(d.phi(last + 150 * MS) < 2.0);
        assert_eq!(d.verdict(last + 150 * MS), Verdict::Alive);
    }

    #[test]
    fn a_stopped_peer_crosses_the_threshold_within_the_expected_time() {
        let d = steady(PhiConfig::default(), 100 * MS, 200);
        let last = d.last_heartbeat().unwrap();
        // Mean 100 ms, σ floored at 100 ms: φ = 8 about 5.2 σ past the mean.
        let crossed = (1..100)
            .map(|k| last + k * 10 * MS)
            .find(|t| d.verdict(*t) == Verdict::Suspected)
            .unwrap();
        let after = crossed - last;
        assert!(
            (550 * MS..=700 * MS).contains(&after),
            "crossed after {after} µs"
        );
        // φ keeps growing and stays finite for any silence.
        let later = d.phi(last + 3_600_000 * MS);
        assert!(later.is_finite() && later > d.phi(crossed));
    }

    #[test]
    fn jitter_does_not_flap() {
        let mut d = PhiDetector::new(PhiConfig::default());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut t = 0;
        for _ in 0..2_000 {
            // Intervals of 100 ms ± 40 ms.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let gap = 60 * MS + rng % (80 * MS);
            // Just before the next heartbeat arrives, the peer must still look alive.
            assert_eq!(
                d.verdict(t + gap - 1),
                if t == 0 {
                    Verdict::Unknown
                } else {
                    Verdict::Alive
                }
            );
            t += gap;
            d.heartbeat(t);
        }
    }

    #[test]
    fn a_regular_peer_is_suspected_sooner_than_an_irregular_one() {
        let cfg = PhiConfig {
            min_std_dev_us: MS,
            ..PhiConfig::default()
        };
        let regular = steady(cfg, 100 * MS, 100);
        let mut irregular = PhiDetector::new(cfg);
        let mut t = 0;
        for i in 0..100 {
            t += if i % 2 == 0 { 20 * MS } else { 180 * MS };
            irregular.heartbeat(t);
        }
        let silence = 300 * MS;
        let r = regular.phi(regular.last_heartbeat().unwrap() + silence);
        let i = irregular.phi(t + silence);
        assert!(r > i, "regular {r} irregular {i}");
    }

    #[test]
    fn the_window_forgets_old_intervals_and_a_new_detector_knows_nothing() {
        let d = PhiDetector::new(PhiConfig::default());
        assert_eq!(d.verdict(1_000_000), Verdict::Unknown);
        assert_eq!(d.phi(1_000_000), 0.0);
        let cfg = PhiConfig {
            window: 10,
            ..PhiConfig::default()
        };
        let mut d = steady(cfg, 1_000 * MS, 50);
        let mut t = d.last_heartbeat().unwrap();
        for _ in 0..10 {
            t += 10 * MS;
            d.heartbeat(t);
        }
        let (mean, _) = d.interval_stats();
        assert_eq!(mean, (10 * MS) as f64, "only the last 10 intervals count");
    }
}
