//! The restart back-off, kubelet style: the first restart after a failed run waits `initial`,
//! each further failure in a row doubles the wait up to `max`, and a run that lasted
//! `resetAfter` starts the count again.

use std::time::Duration;

use berth_engine::state::ContainerRecord;

/// `restartBackoff` of the agent config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// Failed runs in a row that count for the next delay: none if the last run lasted
    /// `reset_after`.
    pub fn streak(&self, r: &ContainerRecord) -> u32 {
        match r.ran_ms() {
            Some(ran) if ran >= self.reset_after.as_millis() as u64 => 0,
            _ => r.backoff_streak,
        }
    }

    /// The wait before the restart that follows `streak` failed runs in a row.
    pub fn delay(&self, streak: u32) -> Duration {
        let factor = 1u32.checked_shl(streak.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Unix ms when the finished container `r` may be started again, and the wait.
    pub fn due(&self, r: &ContainerRecord) -> (u64, Duration) {
        let delay = self.delay(self.streak(r));
        let finished = r.finished_at_ms.unwrap_or(r.created_at_ms);
        (finished + delay.as_millis() as u64, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::state::ContainerState;

    fn finished(streak: u32, ran_ms: u64) -> ContainerRecord {
        ContainerRecord {
            exit_code: Some(1),
            started_at_ms: Some(1_000),
            finished_at_ms: Some(1_000 + ran_ms),
            backoff_streak: streak,
            restart_count: 99,
            ..crate::reconcile::fake::record("a", "h", ContainerState::Exited)
        }
    }

    #[test]
    fn doubles_from_initial_to_max() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..12).map(|s| b.delay(s).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
        let fast = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            reset_after: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (0..4).map(|s| fast.delay(s).as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
    }

    #[test]
    fn a_long_run_resets_the_streak_and_the_lifetime_count_does_not_matter() {
        let b = Backoff::default();
        assert_eq!(
            b.due(&finished(3, 5_000)),
            (1_000 + 5_000 + 8_000, b.delay(3))
        );
        assert_eq!(b.streak(&finished(3, 599_999)), 3);
        assert_eq!(b.streak(&finished(3, 600_000)), 0);
        assert_eq!(
            b.due(&finished(7, 600_000)),
            (1_000 + 600_000 + 1_000, Duration::from_secs(1))
        );
    }
}
