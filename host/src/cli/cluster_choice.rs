//! Which cluster `rmq-wasm create-topic` creates a topic in. RocketMQ's tools default to
//! `DefaultCluster`, but a local or test cluster is often named otherwise: asked for a name the
//! name server does not know, the broker-side answer is only "no master". So: the name given
//! (`--cluster` or `CLUSTER_NAME`), else the one cluster the name server knows; and an error that
//! says what the name server knows and what to pass.

use crate::protocol::body::ClusterInfo;

/// Why no cluster could be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ClusterChoiceError {
    #[error(
        "cluster {asked} is unknown to the name server at {namesrv}; it knows: {}; pass --cluster {} \
         (or set CLUSTER_NAME)",
        known.join(", "),
        known[0]
    )]
    Unknown { asked: String, namesrv: String, known: Vec<String> },
    #[error(
        "the name server at {namesrv} knows no cluster (no broker has registered with it): is the \
         broker running and pointed at this name server?"
    )]
    NoneKnown { namesrv: String },
    #[error(
        "the name server at {namesrv} knows several clusters: {}; pass --cluster with one of them \
         (or set CLUSTER_NAME)",
        known.join(", ")
    )]
    Ambiguous { namesrv: String, known: Vec<String> },
}

/// The cluster to use: `asked` if the name server knows it, else the only one it knows.
pub(crate) fn choose_cluster(
    asked: Option<&str>,
    info: &ClusterInfo,
    namesrv: &str,
) -> Result<String, ClusterChoiceError> {
    let known: Vec<String> = info.cluster_addr_table.keys().cloned().collect();
    let namesrv = namesrv.to_owned();
    match (asked, known.as_slice()) {
        (_, []) => Err(ClusterChoiceError::NoneKnown { namesrv }),
        (Some(asked), _) if known.iter().any(|k| k == asked) => Ok(asked.to_owned()),
        (Some(asked), _) => {
            Err(ClusterChoiceError::Unknown { asked: asked.to_owned(), namesrv, known })
        }
        (None, [only]) => Ok(only.clone()),
        (None, _) => Err(ClusterChoiceError::Ambiguous { namesrv, known }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(clusters: &[&str]) -> ClusterInfo {
        ClusterInfo {
            cluster_addr_table: clusters
                .iter()
                .map(|c| ((*c).to_owned(), Default::default()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_named_cluster_else_the_only_one_else_a_clear_error() {
        let ns = "127.0.0.1:9876";
        let one = info(&["Local"]);
        let two = info(&["A", "B"]);
        assert_eq!(choose_cluster(Some("Local"), &one, ns), Ok("Local".into()));
        assert_eq!(choose_cluster(None, &one, ns), Ok("Local".into()));
        assert_eq!(choose_cluster(Some("B"), &two, ns), Ok("B".into()));
        let e = choose_cluster(Some("DefaultCluster"), &two, ns).unwrap_err().to_string();
        assert_eq!(
            e,
            "cluster DefaultCluster is unknown to the name server at 127.0.0.1:9876; it knows: A, \
             B; pass --cluster A (or set CLUSTER_NAME)"
        );
        let e = choose_cluster(None, &two, ns).unwrap_err().to_string();
        assert!(e.contains("several clusters: A, B"), "{e}");
        let e = choose_cluster(Some("X"), &info(&[]), ns).unwrap_err().to_string();
        assert!(e.contains("knows no cluster"), "{e}");
    }
}
