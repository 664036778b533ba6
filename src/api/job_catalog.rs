//! The jobs scenario files can name, by name (what a Flink user submits by jar and entry
//! class): the built-in ones, and any a user's crate adds to run its own jobs from scenario
//! files with the `snapflow` command line (`snapflow::cli::main_with`).

use crate::api::job::Job;
use crate::api::jobs;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Builds a job for `(source_parallelism, parallelism)` from a scenario's `[job]` (and each
/// stage's).
pub type JobFactory = Arc<dyn Fn(u32, u32) -> Job + Send + Sync>;

/// Jobs by name.
#[derive(Clone)]
pub struct JobCatalog {
    jobs: BTreeMap<String, JobFactory>,
}

impl JobCatalog {
    /// The jobs shipped with snapflow (`snapflow::api::jobs`).
    pub fn built_in() -> JobCatalog {
        let mut catalog = JobCatalog {
            jobs: BTreeMap::new(),
        };
        for name in jobs::JOB_NAMES {
            let factory = move |source: u32, parallelism: u32| {
                jobs::by_name(name, source, parallelism).expect("a built-in job's name")
            };
            catalog.jobs.insert(name.to_string(), Arc::new(factory));
        }
        catalog
    }

    /// This catalog with `name` building jobs with `factory` (replacing any job of that name).
    pub fn with(
        mut self,
        name: &str,
        factory: impl Fn(u32, u32) -> Job + Send + Sync + 'static,
    ) -> JobCatalog {
        self.jobs.insert(name.to_string(), Arc::new(factory));
        self
    }

    /// The job called `name` at these parallelisms, if the catalog has one.
    pub fn build(&self, name: &str, source_parallelism: u32, parallelism: u32) -> Option<Job> {
        self.jobs
            .get(name)
            .map(|factory| factory(source_parallelism, parallelism))
    }

    /// Whether it has a job called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.jobs.contains_key(name)
    }

    /// The names, in order, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.jobs.keys().map(String::as_str).collect()
    }
}

impl Default for JobCatalog {
    fn default() -> JobCatalog {
        JobCatalog::built_in()
    }
}

impl fmt::Debug for JobCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobCatalog({})", self.names().join(", "))
    }
}

impl PartialEq for JobCatalog {
    /// Two catalogs are equal when they name the same jobs (factories cannot be compared).
    fn eq(&self, other: &Self) -> bool {
        self.names() == other.names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_holds_the_built_in_jobs_and_the_users() {
        let catalog =
            JobCatalog::built_in().with("mine", |_, parallelism| jobs::word_count(1, parallelism));
        assert!(catalog.contains("wordcount") && catalog.contains("state-zoo"));
        let job = catalog.build("mine", 3, 2).unwrap();
        assert_eq!(job.operators.last().unwrap().parallelism, 2);
        assert!(catalog.build("nothing", 1, 1).is_none());
        assert_eq!(
            catalog.names(),
            vec!["forward", "mine", "passthrough", "state-zoo", "wordcount"]
        );
    }
}
