//! The nodes of the simulated cluster by the names scenarios use. One parser serves the loader
//! and the injector, so a name the loader accepts is a node the injector finds.

use crate::limits::TASKMANAGERS_MAX;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A node of the simulated cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeName {
    /// `jobmanager`.
    JobManager,
    /// `broker`.
    Broker,
    /// `blobstore`.
    Blobstore,
    /// `kv`: runs only for a sink that writes to the key-value store.
    Kv,
    /// `ha`: the high-availability service, only with high availability on.
    Ha,
    /// `jobmanager-2`: the standby job manager, only with one configured.
    StandbyJobManager,
    /// `taskmanager-N`, N from 1.
    TaskManager(u32),
}

/// A node name that names no node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    /// Not a node of this cluster (or not in canonical form).
    #[error("no node `{name}` (the nodes are {nodes})")]
    NoSuchNode {
        /// The name given.
        name: String,
        /// The nodes there are.
        nodes: String,
    },
    /// Not a node name of any cluster.
    #[error("`{name}` is no node name (jobmanager, jobmanager-2, broker, blobstore, kv, ha, taskmanager-N)")]
    NotANodeName {
        /// The name given.
        name: String,
    },
}

/// Which nodes a cluster has: what a name is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterNodes {
    /// Task managers `taskmanager-1..=taskmanagers`.
    pub taskmanagers: u32,
    /// Whether the `kv` node runs.
    pub kv: bool,
    /// Whether the `ha` node runs.
    pub ha: bool,
    /// Whether the standby job manager `jobmanager-2` runs.
    pub standby: bool,
}

impl ClusterNodes {
    /// Every node name of the cluster, for error messages.
    pub fn describe(&self) -> String {
        let kv = match (self.kv, self.ha) {
            (true, true) => "kv, ha, ",
            (true, false) => "kv, ",
            (false, true) => "ha, ",
            (false, false) => "",
        };
        let taskmanagers = match self.taskmanagers {
            1 => "taskmanager-1".to_string(),
            n => format!("taskmanager-1 .. taskmanager-{n}"),
        };
        let standby = if self.standby { "jobmanager-2, " } else { "" };
        format!("jobmanager, {standby}broker, blobstore, {kv}{taskmanagers}")
    }
}

impl NodeName {
    /// Parses a node name in its canonical form only (`taskmanager-2`, never `taskmanager-02`
    /// or `taskmanager-+2`), checked against the nodes `cluster` has.
    pub fn parse(text: &str, cluster: ClusterNodes) -> Result<NodeName, NodeNameError> {
        let name = match text {
            "jobmanager" => Some(NodeName::JobManager),
            "broker" => Some(NodeName::Broker),
            "blobstore" => Some(NodeName::Blobstore),
            "kv" if cluster.kv => Some(NodeName::Kv),
            "ha" if cluster.ha => Some(NodeName::Ha),
            "jobmanager-2" if cluster.standby => Some(NodeName::StandbyJobManager),
            _ => text
                .strip_prefix("taskmanager-")
                .and_then(canonical_number)
                .filter(|n| (1..=cluster.taskmanagers).contains(n))
                .map(NodeName::TaskManager),
        };
        name.ok_or_else(|| NodeNameError::NoSuchNode {
            name: text.to_string(),
            nodes: cluster.describe(),
        })
    }

    /// Parses a node name in its canonical form, whatever the cluster: the loader checks it
    /// against the cluster with `check`.
    pub fn parse_any(text: &str) -> Result<NodeName, NodeNameError> {
        let widest = ClusterNodes {
            taskmanagers: TASKMANAGERS_MAX,
            kv: true,
            ha: true,
            standby: true,
        };
        NodeName::parse(text, widest).map_err(|_| NodeNameError::NotANodeName {
            name: text.to_string(),
        })
    }

    /// This node, if `cluster` has it.
    pub fn check(self, cluster: ClusterNodes) -> Result<NodeName, NodeNameError> {
        NodeName::parse(&self.to_string(), cluster)
    }

    /// The node's address on the simulated network.
    pub fn ip(self) -> IpAddr {
        let (a, b) = match self {
            NodeName::JobManager => (0, 1),
            NodeName::Broker => (0, 2),
            NodeName::Blobstore => (0, 3),
            NodeName::Kv => (0, 4),
            NodeName::Ha => (0, 5),
            NodeName::StandbyJobManager => (0, 6),
            NodeName::TaskManager(n) => {
                let n = u8::try_from(n).expect("the loader bounds task managers");
                (1, n)
            }
        };
        IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
    }
}

/// A decimal number written without sign or leading zeros.
fn canonical_number(text: &str) -> Option<u32> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeName::JobManager => write!(f, "jobmanager"),
            NodeName::Broker => write!(f, "broker"),
            NodeName::Blobstore => write!(f, "blobstore"),
            NodeName::Kv => write!(f, "kv"),
            NodeName::Ha => write!(f, "ha"),
            NodeName::StandbyJobManager => write!(f, "jobmanager-2"),
            NodeName::TaskManager(n) => write!(f, "taskmanager-{n}"),
        }
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NodeName::parse_any(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: ClusterNodes = ClusterNodes {
        taskmanagers: 2,
        kv: false,
        ha: false,
        standby: false,
    };

    #[test]
    fn only_canonical_names_of_existing_nodes_parse() {
        assert_eq!(
            NodeName::parse("taskmanager-2", CLUSTER),
            Ok(NodeName::TaskManager(2))
        );
        assert_eq!(
            NodeName::parse("jobmanager", CLUSTER),
            Ok(NodeName::JobManager)
        );
        for bad in [
            "taskmanager-01",
            "taskmanager-+1",
            "taskmanager-0",
            "taskmanager-3",
            "taskmanager-",
            "taskmanager-1 ",
            "kv",
            "ha",
            "JobManager",
        ] {
            let error = NodeName::parse(bad, CLUSTER).unwrap_err().to_string();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
            assert!(
                error.contains("jobmanager, broker, blobstore, taskmanager-1 .. taskmanager-2"),
                "{error}"
            );
        }
    }

    #[test]
    fn names_render_as_they_parse() {
        let cluster = ClusterNodes {
            taskmanagers: 12,
            kv: true,
            ha: true,
            standby: true,
        };
        for name in [
            NodeName::JobManager,
            NodeName::Broker,
            NodeName::Blobstore,
            NodeName::Kv,
            NodeName::Ha,
            NodeName::TaskManager(1),
            NodeName::TaskManager(12),
        ] {
            assert_eq!(NodeName::parse(&name.to_string(), cluster), Ok(name));
        }
    }
}
