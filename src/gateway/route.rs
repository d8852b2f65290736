//! Pure SNI routing: exact names and `*.suffix` wildcards, cost flat in the number of routes.

use std::collections::HashMap;

/// Exact names beat wildcards; among wildcards the longest suffix wins; then the default.
#[derive(Clone, Debug)]
pub struct RouteTable<T> {
    exact: HashMap<String, T>,
    suffix: HashMap<String, T>,
    default: Option<T>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("TODO")]
    Todo,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            suffix: HashMap::new(),
            default: None,
        }
    }
}

impl<T> RouteTable<T> {
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds `pattern` (`name.example` or `*.example`); a duplicate pattern is an error.
    pub fn insert(&mut self, _pattern: &str, _value: T) -> Result<(), RouteError> {
        todo!()
    }
    pub fn set_default(&mut self, value: T) {
        self.default = Some(value);
    }
    pub fn lookup(&self, _server_name: Option<&str>) -> Option<&T> {
        todo!()
    }
}
