//! Agents that follow a git repository.
