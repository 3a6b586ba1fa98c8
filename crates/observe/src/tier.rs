//! Which tier is speaking: the names it goes by in headers, logs and metric labels.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Edge,
    Shield,
    Origin,
}

impl Tier {
    /// The name in `Cache-Status` entries, process names and logs.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Edge => "edge-pop",
            Tier::Shield => "shield",
            Tier::Origin => "origin-adapter",
        }
    }

    /// The `tier` label of its metrics and its `Server-Timing` entry.
    pub fn label(self) -> &'static str {
        match self {
            Tier::Edge => "edge",
            Tier::Shield => "shield",
            Tier::Origin => "origin",
        }
    }
}
