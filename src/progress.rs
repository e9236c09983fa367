//! How long work reports what it is doing. The library never draws on the terminal: the CLIs
//! pass progress bars ([`crate::cli::Bars`]), tests and benchmarks pass [`Quiet`].

/// Receives the progress of a long run. Called from worker threads, hence `Sync`.
pub trait Progress: Sync {
    /// A stage of `total` steps begins ("reading", "image features", "epoch 3", ...).
    fn begin(&self, stage: &str, total: usize);
    /// `n` more steps of the current stage are done; `status` (a running loss, say) if any.
    fn advance(&self, n: usize, status: Option<&str>);
    /// The current stage is over.
    fn finish(&self);
    /// A line worth keeping on screen: a warning, an epoch's summary.
    fn note(&self, line: &str);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _: &str, _: usize) {}
    fn advance(&self, _: usize, _: Option<&str>) {}
    fn finish(&self) {}
    fn note(&self, _: &str) {}
}
