//! Restart strategies (Flink's `restart-strategy.*`). Sans-IO.

use crate::time::{Duration, Instant};

/// A configured restart strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartStrategyConfig {
    /// `none`: the first failure fails the job.
    None,
    /// `fixed-delay`: up to `attempts` restarts, each after `delay`.
    FixedDelay {
        /// `restart-strategy.fixed-delay.attempts`.
        attempts: u32,
        /// `restart-strategy.fixed-delay.delay`.
        delay: Duration,
    },
}

/// What to do about a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Redeploy the job at this time.
    RestartAt(Instant),
    /// Give up: the job fails.
    GiveUp(String),
}

/// Decides whether and when a failed job restarts.
#[derive(Clone, Debug)]
pub struct RestartStrategy {
    config: RestartStrategyConfig,
    restarts: u32,
}

impl RestartStrategy {
    /// A strategy that has seen no failure yet.
    pub fn new(config: RestartStrategyConfig) -> Self {
        RestartStrategy {
            config,
            restarts: 0,
        }
    }

    /// The job failed at `now`.
    pub fn on_failure(&mut self, now: Instant) -> RestartDecision {
        match self.config {
            RestartStrategyConfig::None => {
                RestartDecision::GiveUp("restart strategy is none".to_string())
            }
            RestartStrategyConfig::FixedDelay { attempts, delay } => {
                if self.restarts >= attempts {
                    return RestartDecision::GiveUp(format!(
                        "fixed-delay restart strategy used all {attempts} attempts"
                    ));
                }
                self.restarts += 1;
                RestartDecision::RestartAt(now.add(delay))
            }
        }
    }

    /// Restarts granted so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_restarts_then_gives_up() {
        let mut strategy = RestartStrategy::new(RestartStrategyConfig::FixedDelay {
            attempts: 2,
            delay: Duration::from_ms(500),
        });
        assert_eq!(
            strategy.on_failure(Instant::from_ms(100)),
            RestartDecision::RestartAt(Instant::from_ms(600))
        );
        assert_eq!(
            strategy.on_failure(Instant::from_ms(900)),
            RestartDecision::RestartAt(Instant::from_ms(1400))
        );
        assert!(matches!(
            strategy.on_failure(Instant::from_ms(2000)),
            RestartDecision::GiveUp(_)
        ));
        assert_eq!(strategy.restarts(), 2);
    }

    #[test]
    fn none_gives_up_at_once() {
        let mut strategy = RestartStrategy::new(RestartStrategyConfig::None);
        assert!(matches!(
            strategy.on_failure(Instant::ZERO),
            RestartDecision::GiveUp(_)
        ));
    }
}
