//! The build graph: one node per (stage, distinct work), edges from what each stage reads.
//!
//! A node's identity is a hash of what it *is* before anything runs: its stage kind and
//! version, its config slice, the names of the files it reads, and the identities of the
//! nodes it depends on. Two tasks that share a base, or a corpus with the same recall
//! settings, therefore share one node, and the work is done once. The cache key of a node is a
//! different hash, computed at run time from the *contents* of its inputs (see `executor`).

use std::collections::HashMap;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::kolmfile::Kolmfile;
use crate::stages::{BuildOptions, StageKind, Stages};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Static identity (blake3 hex).
    pub id: String,
    pub kind: StageKind,
    /// Tasks this node serves, in Kolmfile order; the first one's configuration is used.
    pub tasks: Vec<String>,
    #[serde(skip)]
    pub task_index: usize,
    /// Files the node reads (Kolmfile-relative).
    pub files: Vec<String>,
}

impl Node {
    /// `recall` or `recall (a, b)` when shared, for messages.
    pub fn label(&self) -> String {
        format!("{} ({})", self.kind, self.tasks.join(", "))
    }
}

pub struct Graph {
    pub g: StableDiGraph<Node, ()>,
    /// Nodes in a topological order (pipeline order, then Kolmfile order).
    pub order: Vec<NodeIndex>,
}

impl Graph {
    /// Plans the graph of a Kolmfile.
    pub fn plan(kolmfile: &Kolmfile, stages: &Stages, options: &BuildOptions) -> Result<Graph> {
        let mut g: StableDiGraph<Node, ()> = StableDiGraph::new();
        let mut by_id: HashMap<String, NodeIndex> = HashMap::new();
        let mut order = Vec::new();
        for (ti, task) in kolmfile.tasks.iter().enumerate() {
            let mut of_kind: HashMap<StageKind, NodeIndex> = HashMap::new();
            for kind in StageKind::ALL {
                let stage = stages.get(kind);
                let deps: Vec<NodeIndex> = kind.deps().iter().map(|d| of_kind[d]).collect();
                let files = stage.files(kolmfile, task)?;
                let id = crate::digest::key_of(&serde_json::json!({
                    "kind": kind,
                    "version": stage.version(),
                    "config": stage.config(task, options),
                    "files": files,
                    "deps": deps.iter().map(|d| &g[*d].id).collect::<Vec<&String>>(),
                }));
                let idx = match by_id.get(&id) {
                    Some(&idx) => {
                        let n: &mut Node = &mut g[idx];
                        n.tasks.push(task.name.clone());
                        idx
                    }
                    None => {
                        let idx = g.add_node(Node {
                            id: id.clone(),
                            kind,
                            tasks: vec![task.name.clone()],
                            task_index: ti,
                            files,
                        });
                        for d in &deps {
                            g.add_edge(*d, idx, ());
                        }
                        by_id.insert(id, idx);
                        order.push(idx);
                        idx
                    }
                };
                of_kind.insert(kind, idx);
            }
        }
        // Pipeline order across tasks keeps shared early stages first.
        order.sort_by_key(|i| g[*i].kind);
        Ok(Graph { g, order })
    }

    pub fn deps(&self, idx: NodeIndex) -> Vec<NodeIndex> {
        let mut d: Vec<NodeIndex> = self
            .g
            .edges_directed(idx, petgraph::Direction::Incoming)
            .map(|e| e.source())
            .collect();
        d.sort();
        d
    }

    /// Graphviz.
    pub fn to_dot(&self) -> String {
        let mut s = String::from(
            "digraph kolm {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for &i in &self.order {
            let n = &self.g[i];
            s.push_str(&format!(
                "  \"{}\" [label=\"{}\\n{}\"];\n",
                &n.id[..12],
                n.kind,
                n.tasks.join(", ")
            ));
        }
        for &i in &self.order {
            for d in self.deps(i) {
                s.push_str(&format!(
                    "  \"{}\" -> \"{}\";\n",
                    &self.g[d].id[..12],
                    &self.g[i].id[..12]
                ));
            }
        }
        s.push_str("}\n");
        s
    }

    /// JSON: nodes (with their dependencies' ids) in topological order.
    pub fn to_json(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .order
            .iter()
            .map(|&i| {
                let n = &self.g[i];
                serde_json::json!({
                    "id": n.id,
                    "stage": n.kind,
                    "tasks": n.tasks,
                    "files": n.files,
                    "deps": self.deps(i).iter().map(|d| self.g[*d].id.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({ "nodes": nodes })
    }
}
