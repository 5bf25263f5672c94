//! Triton's ONNX Runtime global thread pool
//! (`--backend-config=onnxruntime,enable-global-threadpool=1`): one pool of
//! intra-op and one of inter-op threads in the process's ONNX Runtime
//! environment, shared by every session, so that many models and
//! instances do not each start threads of their own. Sessions then take
//! no thread counts of their own, as in Triton, where the models'
//! `intra_op_thread_count` and `inter_op_thread_count` are ignored.

use ort::environment::GlobalThreadPoolOptions;

/// The sizes of the global thread pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalThreadPool {
    /// `intra_op_thread_count`; 0 lets ONNX Runtime choose (one per core).
    pub intra_op_threads: usize,
    /// `inter_op_thread_count`; 0 lets ONNX Runtime choose.
    pub inter_op_threads: usize,
}

impl GlobalThreadPool {
    /// The environment's options for this pool. Its threads sleep when idle,
    /// as the sessions' own threads do here by default.
    pub(super) fn options(&self) -> ort::Result<GlobalThreadPoolOptions> {
        GlobalThreadPoolOptions::default()
            .with_intra_threads(self.intra_op_threads)?
            .with_inter_threads(self.inter_op_threads)?
            .with_spin_control(false)
    }
}
