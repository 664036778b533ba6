//! Restart strategies (Flink's `restart-strategy.*` and its `RestartBackoffTimeStrategy`
//! implementations). Sans-IO: each failure comes in with its time, and the answer is when to
//! restart or why not. Exponential-delay's jitter comes from a generator seeded by the run.

use crate::time::{Duration, Instant};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::fmt;

/// A configured restart strategy, with Flink's option names.
#[derive(Clone, Debug, PartialEq)]
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
    /// `failure-rate`: restarts after `delay` unless `max_failures_per_interval` failures fell
    /// within `failure_rate_interval`.
    FailureRate {
        /// `restart-strategy.failure-rate.max-failures-per-interval`.
        max_failures_per_interval: u32,
        /// `restart-strategy.failure-rate.failure-rate-interval`.
        failure_rate_interval: Duration,
        /// `restart-strategy.failure-rate.delay`.
        delay: Duration,
    },
    /// `exponential-delay` (Flink 1.19's rules, FLIP-364).
    ExponentialDelay(ExponentialDelayConfig),
}

/// `restart-strategy.exponential-delay.*`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExponentialDelayConfig {
    /// `initial-backoff`.
    pub initial_backoff: Duration,
    /// `max-backoff`.
    pub max_backoff: Duration,
    /// `backoff-multiplier` (> 1).
    pub backoff_multiplier: f64,
    /// `reset-backoff-threshold`: this long after the last restart without a failure, the
    /// backoff starts over.
    pub reset_backoff_threshold: Duration,
    /// `jitter-factor` (0..=1): the backoff varies by up to this fraction either way.
    pub jitter_factor: f64,
    /// `attempts-before-reset-backoff`: restarts allowed before the backoff resets; one more
    /// failure fails the job.
    pub attempts_before_reset_backoff: u32,
}

impl Default for ExponentialDelayConfig {
    /// Flink 1.19's defaults.
    fn default() -> Self {
        ExponentialDelayConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            backoff_multiplier: 1.5,
            reset_backoff_threshold: Duration::from_secs(3600),
            jitter_factor: 0.1,
            attempts_before_reset_backoff: i32::MAX as u32,
        }
    }
}

/// A restart-strategy setting Flink refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestartConfigError {
    /// A value out of its range.
    #[error("restart-strategy.{option} must be {rule} (it is {value})")]
    OutOfRange {
        /// The option's full name under `restart-strategy.`.
        option: &'static str,
        /// What it must be.
        rule: &'static str,
        /// What it is.
        value: String,
    },
}

impl RestartStrategyConfig {
    /// Flink's name of the strategy.
    pub fn name(&self) -> &'static str {
        match self {
            RestartStrategyConfig::None => "none",
            RestartStrategyConfig::FixedDelay { .. } => "fixed-delay",
            RestartStrategyConfig::FailureRate { .. } => "failure-rate",
            RestartStrategyConfig::ExponentialDelay(_) => "exponential-delay",
        }
    }

    /// Refuses what Flink's strategies refuse at construction.
    pub fn validate(&self) -> Result<(), RestartConfigError> {
        let out_of_range = |option, rule, value: String| {
            Err(RestartConfigError::OutOfRange {
                option,
                rule,
                value,
            })
        };
        match self {
            RestartStrategyConfig::None | RestartStrategyConfig::FixedDelay { .. } => Ok(()),
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval,
                failure_rate_interval,
                ..
            } => {
                if *max_failures_per_interval == 0 {
                    return out_of_range(
                        "failure-rate.max-failures-per-interval",
                        "at least 1",
                        "0".into(),
                    );
                }
                if *failure_rate_interval == Duration::ZERO {
                    return out_of_range(
                        "failure-rate.failure-rate-interval",
                        "longer than 0",
                        "0".into(),
                    );
                }
                Ok(())
            }
            RestartStrategyConfig::ExponentialDelay(config) => config.validate(),
        }
    }
}

impl ExponentialDelayConfig {
    fn validate(&self) -> Result<(), RestartConfigError> {
        let fail = |option, rule, value: String| {
            Err(RestartConfigError::OutOfRange {
                option,
                rule,
                value,
            })
        };
        if self.initial_backoff < Duration::from_ms(1) {
            return fail(
                "exponential-delay.initial-backoff",
                "at least 1 ms",
                self.initial_backoff.to_string(),
            );
        }
        if self.max_backoff < self.initial_backoff {
            return fail(
                "exponential-delay.max-backoff",
                "at least the initial backoff",
                self.max_backoff.to_string(),
            );
        }
        if !(self.backoff_multiplier > 1.0 && self.backoff_multiplier.is_finite()) {
            return fail(
                "exponential-delay.backoff-multiplier",
                "greater than 1",
                self.backoff_multiplier.to_string(),
            );
        }
        if self.reset_backoff_threshold < Duration::from_ms(1) {
            return fail(
                "exponential-delay.reset-backoff-threshold",
                "at least 1 ms",
                self.reset_backoff_threshold.to_string(),
            );
        }
        if !(0.0..=1.0).contains(&self.jitter_factor) {
            return fail(
                "exponential-delay.jitter-factor",
                "between 0 and 1",
                self.jitter_factor.to_string(),
            );
        }
        if self.attempts_before_reset_backoff == 0 {
            return fail(
                "exponential-delay.attempts-before-reset-backoff",
                "at least 1",
                "0".into(),
            );
        }
        Ok(())
    }
}

impl fmt::Display for RestartStrategyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartStrategyConfig::None => write!(f, "none"),
            RestartStrategyConfig::FixedDelay { attempts, delay } => {
                write!(f, "fixed-delay (attempts {attempts}, delay {delay})")
            }
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval,
                failure_rate_interval,
                delay,
            } => write!(
                f,
                "failure-rate ({max_failures_per_interval} failures per {failure_rate_interval}, delay {delay})"
            ),
            RestartStrategyConfig::ExponentialDelay(c) => write!(
                f,
                "exponential-delay (initial-backoff {}, max-backoff {}, backoff-multiplier {}, reset-backoff-threshold {}, jitter-factor {}, attempts-before-reset-backoff {})",
                c.initial_backoff,
                c.max_backoff,
                c.backoff_multiplier,
                c.reset_backoff_threshold,
                c.jitter_factor,
                c.attempts_before_reset_backoff
            ),
        }
    }
}

/// What to do about a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Redeploy the job at this time.
    RestartAt(Instant),
    /// Give up: the job fails.
    GiveUp(String),
}

/// Failures kept to name in a give-up (the newest; a long run keeps no more than this).
const FAILURES_NAMED_MAX: usize = 16;

/// Decides whether and when a failed job restarts.
#[derive(Clone, Debug)]
pub struct RestartStrategy {
    config: RestartStrategyConfig,
    restarts: u32,
    // Failure-rate: the times of the newest failures, at most `max_failures_per_interval`.
    window: VecDeque<Instant>,
    // Exponential-delay: the attempt counter and when the pending restart is due.
    attempt: u32,
    next_restart: Option<Instant>,
    jitter: ChaCha8Rng,
    failures: VecDeque<(Instant, String)>,
}

impl RestartStrategy {
    /// A strategy that has seen no failure yet; `seed` (from the run's generator) drives
    /// exponential-delay's jitter.
    pub fn new(config: RestartStrategyConfig, seed: u64) -> Self {
        debug_assert!(config.validate().is_ok(), "validated when loaded");
        RestartStrategy {
            config,
            restarts: 0,
            window: VecDeque::new(),
            attempt: 0,
            next_restart: None,
            jitter: ChaCha8Rng::seed_from_u64(seed),
            failures: VecDeque::new(),
        }
    }

    /// The job failed at `now` because of `cause`.
    pub fn on_failure(&mut self, now: Instant, cause: &str) -> RestartDecision {
        if self.failures.len() == FAILURES_NAMED_MAX {
            self.failures.pop_front();
        }
        self.failures.push_back((now, cause.to_string()));
        let decision = match &self.config {
            RestartStrategyConfig::None => Err("it never restarts".to_string()),
            RestartStrategyConfig::FixedDelay { attempts, delay } => {
                if self.restarts >= *attempts {
                    Err(format!("all {attempts} restart attempt(s) were used"))
                } else {
                    Ok(now.add(*delay))
                }
            }
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval,
                failure_rate_interval,
                delay,
            } => self.failure_rate(
                now,
                *max_failures_per_interval,
                *failure_rate_interval,
                *delay,
            ),
            RestartStrategyConfig::ExponentialDelay(config) => {
                let config = config.clone();
                self.exponential_delay(now, &config)
            }
        };
        match decision {
            Ok(at) => {
                self.restarts += 1;
                RestartDecision::RestartAt(at)
            }
            Err(why) => RestartDecision::GiveUp(self.give_up(&why)),
        }
    }

    // Flink's FailureRateRestartBackoffTimeStrategy: the failure joins the window (dropping
    // the oldest when it is full); with the window full, a restart needs its oldest failure
    // to be more than the interval ago.
    fn failure_rate(
        &mut self,
        now: Instant,
        max: u32,
        interval: Duration,
        delay: Duration,
    ) -> Result<Instant, String> {
        if self.window.len() == max as usize {
            self.window.pop_front();
        }
        self.window.push_back(now);
        let oldest = *self.window.front().expect("just pushed");
        if self.window.len() == max as usize && now.since(oldest) <= interval {
            return Err(format!(
                "{max} failure(s) within {interval} (from {oldest} to {now})"
            ));
        }
        Ok(now.add(delay))
    }

    // Flink 1.19's ExponentialDelayRestartBackoffTimeStrategy: a failure while a restart is
    // pending joins that restart; a failure long enough after the last restart starts the
    // backoff over; each new attempt waits initial × multiplier^attempt (± jitter), within
    // [initial, max]; past `attempts-before-reset-backoff` attempts the job fails.
    fn exponential_delay(
        &mut self,
        now: Instant,
        config: &ExponentialDelayConfig,
    ) -> Result<Instant, String> {
        if let Some(pending) = self.next_restart.filter(|&at| now <= at) {
            return Ok(pending);
        }
        if self
            .next_restart
            .is_some_and(|last| now.since(last) >= config.reset_backoff_threshold)
        {
            self.attempt = 0;
        }
        let backoff = exponential_backoff(config, self.attempt, &mut self.jitter);
        self.attempt += 1;
        if self.attempt > config.attempts_before_reset_backoff {
            return Err(format!(
                "{} attempt(s) without a reset of the backoff (attempts-before-reset-backoff {})",
                self.attempt, config.attempts_before_reset_backoff
            ));
        }
        let at = now.add(backoff);
        self.next_restart = Some(at);
        Ok(at)
    }

    fn give_up(&self, why: &str) -> String {
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(at, cause)| format!("{at}: {cause}"))
            .collect();
        format!(
            "restart strategy {} gave up after {} restart(s): {why}; failures: {}",
            self.config,
            self.restarts,
            failures.join("; ")
        )
    }

    /// Restarts granted so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

/// Exponential-delay's backoff for `attempt` (from 0): `initial × multiplier^attempt` plus a
/// jitter drawn uniformly from ±`jitter-factor` of it, kept within [initial, max], in whole
/// milliseconds as Flink computes it.
pub fn exponential_backoff(
    config: &ExponentialDelayConfig,
    attempt: u32,
    jitter: &mut ChaCha8Rng,
) -> Duration {
    let initial_ms = config.initial_backoff.as_ms() as f64;
    let max_ms = config.max_backoff.as_ms();
    let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
    // Saturates at i64::MAX like Java's double-to-long cast.
    let base_ms = (initial_ms * config.backoff_multiplier.powi(exponent)) as i64;
    let offset = (base_ms as f64 * config.jitter_factor) as i64;
    let jittered = if offset == 0 {
        base_ms
    } else {
        base_ms.saturating_add(jitter.gen_range(-offset..=offset))
    };
    let bounded = jittered
        .min(max_ms as i64)
        .max(config.initial_backoff.as_ms() as i64);
    Duration::from_ms(bounded as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_ms(ms)
    }

    #[test]
    fn fixed_delay_restarts_then_gives_up_naming_the_failures() {
        let mut strategy = RestartStrategy::new(
            RestartStrategyConfig::FixedDelay {
                attempts: 2,
                delay: Duration::from_ms(500),
            },
            1,
        );
        assert_eq!(
            strategy.on_failure(at(100), "a"),
            RestartDecision::RestartAt(at(600))
        );
        assert_eq!(
            strategy.on_failure(at(900), "b"),
            RestartDecision::RestartAt(at(1400))
        );
        let RestartDecision::GiveUp(why) = strategy.on_failure(at(2000), "c") else {
            panic!("a third failure exceeds 2 attempts");
        };
        assert!(
            why.contains("fixed-delay (attempts 2, delay 500ms)"),
            "{why}"
        );
        assert!(why.contains("all 2 restart attempt(s) were used"), "{why}");
        assert!(why.contains("0.100s: a; 0.900s: b; 2.000s: c"), "{why}");
        assert_eq!(strategy.restarts(), 2);
    }

    #[test]
    fn none_gives_up_at_once() {
        let mut strategy = RestartStrategy::new(RestartStrategyConfig::None, 1);
        assert!(matches!(
            strategy.on_failure(Instant::ZERO, "boom"),
            RestartDecision::GiveUp(why) if why.contains("it never restarts")
        ));
    }

    /// The seeds' example: 3 failures per 5 min, 10 s delay. The third failure within five
    /// minutes of the first fails the job; failures spread wider than that never do.
    #[test]
    fn failure_rate_gives_up_at_the_third_failure_within_the_interval() {
        let config = RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 3,
            failure_rate_interval: Duration::from_secs(300),
            delay: Duration::from_secs(10),
        };
        let mut spread = RestartStrategy::new(config.clone(), 1);
        for minute in [0, 3, 6, 9, 12, 15] {
            let now = at(minute * 60_000);
            assert_eq!(
                spread.on_failure(now, "x"),
                RestartDecision::RestartAt(now.add(Duration::from_secs(10))),
                "minute {minute}: the failure three back is more than 5 min ago"
            );
        }
        let mut dense = RestartStrategy::new(config, 1);
        assert!(matches!(
            dense.on_failure(at(0), "x"),
            RestartDecision::RestartAt(_)
        ));
        assert!(matches!(
            dense.on_failure(at(100_000), "x"),
            RestartDecision::RestartAt(_)
        ));
        let RestartDecision::GiveUp(why) = dense.on_failure(at(300_000), "x") else {
            panic!("three failures within exactly 5 min");
        };
        assert!(why.contains("3 failure(s) within 300000ms"), "{why}");
    }

    fn exponential(jitter_factor: f64, attempts: u32) -> ExponentialDelayConfig {
        ExponentialDelayConfig {
            jitter_factor,
            attempts_before_reset_backoff: attempts,
            ..ExponentialDelayConfig::default()
        }
    }

    /// Without jitter the backoffs are Flink's formula: 1 s × 1.5^n, capped at 1 min.
    #[test]
    fn exponential_delay_follows_the_formula_and_caps_at_the_maximum() {
        let mut strategy = RestartStrategy::new(
            RestartStrategyConfig::ExponentialDelay(exponential(0.0, 100)),
            1,
        );
        let mut now = at(0);
        let mut backoffs = Vec::new();
        for _ in 0..12 {
            let RestartDecision::RestartAt(restart) = strategy.on_failure(now, "x") else {
                panic!("within the attempts");
            };
            backoffs.push(restart.since(now).as_ms());
            now = restart.add(Duration::from_ms(10)); // Fails again soon after each restart.
        }
        assert_eq!(
            backoffs,
            vec![1000, 1500, 2250, 3375, 5062, 7593, 11390, 17085, 25628, 38443, 57665, 60000]
        );
    }

    #[test]
    fn exponential_delay_merges_resets_jitters_and_gives_up() {
        let config = exponential(0.1, 3);
        let mut strategy =
            RestartStrategy::new(RestartStrategyConfig::ExponentialDelay(config.clone()), 7);
        let RestartDecision::RestartAt(first) = strategy.on_failure(at(0), "x") else {
            panic!();
        };
        let first_ms = first.since(at(0)).as_ms();
        assert!(
            (1000..=1100).contains(&first_ms),
            "1 s ± 10%, at least 1 s: {first_ms}"
        );
        // A second failure before the pending restart joins it.
        assert_eq!(
            strategy.on_failure(at(500), "y"),
            RestartDecision::RestartAt(first)
        );
        assert_eq!(strategy.restarts(), 2);
        // An hour of quiet after the restart starts the backoff over.
        let later = first.add(Duration::from_secs(3600));
        let RestartDecision::RestartAt(again) = strategy.on_failure(later, "z") else {
            panic!();
        };
        assert!(again.since(later).as_ms() <= 1100);
        // Attempts 2 and 3 are granted, a 4th without a reset fails the job.
        let mut now = again;
        for _ in 0..2 {
            now = now.add(Duration::from_ms(1));
            let RestartDecision::RestartAt(next) = strategy.on_failure(now, "w") else {
                panic!("within 3 attempts");
            };
            now = next;
        }
        let RestartDecision::GiveUp(why) = strategy.on_failure(now.add(Duration::from_ms(1)), "v")
        else {
            panic!("a 4th attempt exceeds attempts-before-reset-backoff 3");
        };
        assert!(why.contains("attempts-before-reset-backoff 3"), "{why}");
        // The jitter comes from the seed: the same seed gives the same delays.
        let mut twin = RestartStrategy::new(RestartStrategyConfig::ExponentialDelay(config), 7);
        assert_eq!(
            twin.on_failure(at(0), "x"),
            RestartDecision::RestartAt(first)
        );
    }

    #[test]
    fn settings_flink_refuses_are_refused() {
        let bad = [
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval: 0,
                failure_rate_interval: Duration::from_secs(1),
                delay: Duration::ZERO,
            },
            RestartStrategyConfig::ExponentialDelay(ExponentialDelayConfig {
                backoff_multiplier: 1.0,
                ..ExponentialDelayConfig::default()
            }),
            RestartStrategyConfig::ExponentialDelay(ExponentialDelayConfig {
                jitter_factor: 1.5,
                ..ExponentialDelayConfig::default()
            }),
            RestartStrategyConfig::ExponentialDelay(ExponentialDelayConfig {
                max_backoff: Duration::from_ms(10),
                ..ExponentialDelayConfig::default()
            }),
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config}");
        }
        let default = RestartStrategyConfig::ExponentialDelay(ExponentialDelayConfig::default());
        assert_eq!(default.validate(), Ok(()));
    }
}
