//! The status rules of SPEC §4, in one place: which event types count, which category each belongs
//! to and what state it means. The store keeps the latest event per (workspace, account, type);
//! everything here is derived from those rows.

/// The event types that change a status; any other type is stored and shown in history only.
pub const KNOWN_TYPES: [&str; 9] = [
    "account.created",
    "account.updated",
    "account.deleted",
    "link.created",
    "link.updated",
    "link.deleted",
    "sync.complete",
    "sync.error",
    "sync.paused",
];

/// The three status categories of an integration account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Account,
    Link,
    Sync,
}

/// The category and state a known event type stands for; `None` for an unknown type.
pub fn category_and_state(event_type: &str) -> Option<(Category, &'static str)> {
    Some(match event_type {
        "account.created" | "account.updated" => (Category::Account, "active"),
        "account.deleted" => (Category::Account, "deleted"),
        "link.created" | "link.updated" => (Category::Link, "active"),
        "link.deleted" => (Category::Link, "deleted"),
        "sync.complete" => (Category::Sync, "complete"),
        "sync.error" => (Category::Sync, "error"),
        "sync.paused" => (Category::Sync, "paused"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_type_has_a_category_and_nothing_else_does() {
        for t in KNOWN_TYPES {
            assert!(category_and_state(t).is_some(), "{t}");
        }
        for t in ["sync", "sync.started", "ACCOUNT.CREATED", ""] {
            assert!(category_and_state(t).is_none(), "{t}");
        }
    }
}
