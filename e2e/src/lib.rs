//! End-to-end tests live in `tests/`; they run the workspace's binaries from the target directory
//! (`cargo test --workspace` builds them first) and the scripts under `deploy/`.
