//! The NCCL engine (cargo feature `cuda`): one NCCL communicator per process, on the
//! process's CUDA device, summing gradient buckets in place in Burn's own CUDA buffers — no
//! host copy, no second allocation.
//!
//! A bucket's way through [`NcclEngine::sum_device`]:
//! 1. its primitive is downcast at run time to the CUDA build's tensor types: a burn-fusion
//!    `FusionTensor` is resolved (its pending operations run) into burn-cubecl's
//!    `CubeTensor<CudaRuntime>`; any other backend (Flex, NdArray) is an error;
//! 2. the tensor is made contiguous and exclusively owned, as burn-cubecl's own all-reduce does
//!    (a fresh copy when it is shared or strided);
//! 3. `ComputeClient::get_resource` gives the buffer's device pointer (offset applied) and a
//!    guard that keeps the memory alive; getting it orders this thread's CubeCL stream after
//!    the streams that wrote the buffer, and a sync of that stream makes the values final;
//! 4. `ncclAllReduce(ptr, ptr, …, ncclSum)` runs on the engine's own stream, which is then
//!    synchronized, so the sum is complete before the tensor's next use;
//! 5. the same buffer becomes a Burn tensor again (for fusion: registered back in the fusion
//!    client as an initialized tensor, as `float_from_data` does).
//!
//! The pointer is never wrapped in an owning cudarc `CudaSlice` (its drop would free Burn's
//! memory). Rank 0's NCCL id reaches the others by MPI under an MPI launcher (with feature
//! `mpi`), otherwise over TCP (`rendezvous.rs`). The watchdog's aborter calls
//! `ncclCommAbort`. NCCL's library is checked loadable first (`nccl_lib.rs`).

use std::any::Any;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::Duration;

use burn::backend::cuda::CudaDevice;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use burn_fusion::client::GlobalFusionClient;
use burn_fusion::stream::OperationStreams;
use burn_fusion::{FusionTensor, NoOp};
use burn_ir::{BackendIr, InitOperationIr, OperationIr, OperationOutput};
use cudarc::driver::{CudaContext, CudaStream, DevicePtrMut};
use cudarc::nccl::{result as nccl, sys};

use crate::dist::engine::{Aborter, Engine, Rank};
use crate::dist::launch::Launch;
use crate::dist::nccl_lib;
use crate::dist::rendezvous::{self, Meeting, ID_BYTES};
use crate::{DistSection, TrainError};

/// burn-cubecl's CUDA backend (the inner backend of `burn::backend::Cuda`).
type Cube = CubeBackend<CudaRuntime, f32, i32, u8>;
/// A CUDA tensor behind burn-fusion (the float primitive of `burn::backend::Cuda`).
type FusedCuda = FusionTensor<FusionCubeRuntime<CudaRuntime>>;
type FusionClient = GlobalFusionClient<FusionCubeRuntime<CudaRuntime>>;

/// The communicator, shared with the watchdog's aborter. It lives in an `AtomicPtr`, which is
/// `Send + Sync`: taking it out (abort, finish, drop) is one atomic swap, so it is aborted or
/// destroyed once. Sound to use from several threads because NCCL allows `ncclCommAbort` from
/// any thread, also while a collective of the communicator hangs in another one (that is what
/// it is for); collectives themselves are only issued by the engine's owner, one at a time.
struct RawComm(AtomicPtr<sys::ncclComm>);

impl RawComm {
    fn get(&self) -> Result<sys::ncclComm_t, TrainError> {
        let comm = self.0.load(Ordering::Acquire);
        match comm.is_null() {
            true => Err(TrainError::Collective(
                "the NCCL communicator was aborted or finished".into(),
            )),
            false => Ok(comm),
        }
    }

    fn abort(&self) {
        let comm = self.0.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !comm.is_null() {
            // SAFETY: `comm` came from ncclCommInitRank and was taken out of the cell by this
            // swap, so it is aborted exactly once and never used by this engine again.
            let _ = unsafe { nccl::comm_abort(comm) };
        }
    }

    fn finish(&self) -> Result<(), TrainError> {
        let comm = self.0.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if comm.is_null() {
            return Ok(());
        }
        // SAFETY: as in `abort`: taken out once; finalize flushes this rank's last operations
        // to its peers, then destroy frees it.
        unsafe {
            let finalized = nccl::comm_finalize(comm);
            let destroyed = nccl::comm_destroy(comm);
            finalized
                .and(destroyed)
                .map(drop)
                .map_err(|e| nccl_failed("leaving", e))
        }
    }
}

impl Drop for RawComm {
    fn drop(&mut self) {
        self.abort();
    }
}

/// This process's member of the job's NCCL communicator.
pub struct NcclEngine<B: Backend> {
    comm: Arc<RawComm>,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    rank: Rank,
    backend: String,
    /// The names cudarc opens for NCCL (for the error of a panic in cudarc).
    candidates: Vec<String>,
    /// Keeps MPI initialized when it carried the NCCL id (finalized on drop).
    #[cfg(feature = "mpi")]
    _mpi: Option<mpi::environment::Universe>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend> NcclEngine<B> {
    /// Joins the job's communicator as `launch.rank` of `launch.world` on `device` (a CUDA
    /// device): checks that NCCL loads, gets rank 0's id (MPI or TCP), then
    /// `ncclCommInitRank`, which returns once every rank has joined.
    pub fn connect(
        launch: &Launch,
        dist: &DistSection,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let backend = B::name(device);
        let Some(cuda) = (device as &dyn Any).downcast_ref::<CudaDevice>() else {
            return Err(not_cuda(&backend));
        };
        if cuda.index != launch.local_rank {
            // Fine where the launcher hides the other GPUs (CUDA_VISIBLE_DEVICES per rank);
            // otherwise two ranks may share a GPU, which NCCL refuses ("Duplicate GPU").
            tracing::warn!(
                "rank {} (local rank {}) runs NCCL on cuda:{}, not cuda:LOCAL_RANK",
                launch.rank,
                launch.local_rank,
                cuda.index
            );
        }
        nccl_lib::ensure_loadable()?;
        let candidates = nccl_lib::cudarc_candidates();
        let ctx = CudaContext::new(cuda.index).map_err(|e| cuda_failed("opening the device", e))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_failed("creating the NCCL stream", e))?;
        let mine = match launch.rank {
            0 => nccl_lib::catch(&candidates, nccl::get_uniqueid)?
                .map_err(|e| nccl_failed("ncclGetUniqueId", e))?,
            _ => sys::ncclUniqueId {
                internal: [0; ID_BYTES],
            },
        };
        let (id, universe) = unique_id(launch, dist, &id_bytes(&mine))?;
        ctx.bind_to_thread()
            .map_err(|e| cuda_failed("binding the device", e))?;
        let comm = nccl_lib::catch(&candidates, || init_rank(launch, id))??;
        #[cfg(not(feature = "mpi"))]
        let _ = universe;
        Ok(Self {
            comm: Arc::new(RawComm(AtomicPtr::new(comm))),
            stream,
            ctx,
            rank: Rank {
                index: launch.rank,
                world: launch.world,
            },
            backend,
            candidates,
            #[cfg(feature = "mpi")]
            _mpi: universe,
            _backend: PhantomData,
        })
    }

    /// Sums `count` elements of `dtype` at the device address `ptr` over all ranks, in place,
    /// and waits for the result.
    ///
    /// # Safety
    /// `ptr` must address at least `count` elements of `dtype` on this engine's device that
    /// stay allocated, and that no other work reads or writes, until this returns.
    unsafe fn all_reduce_in_place(
        &self,
        ptr: u64,
        count: usize,
        dtype: sys::ncclDataType_t,
    ) -> Result<(), TrainError> {
        let comm = self.comm.get()?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_failed("binding the device", e))?;
        let buf = ptr as *mut c_void;
        let stream = self.stream.cu_stream() as sys::cudaStream_t;
        // SAFETY: the caller guarantees the buffer; `comm` is live (taken from the cell) and
        // `stream` belongs to the communicator's device.
        unsafe {
            nccl::all_reduce(
                buf,
                buf,
                count,
                dtype,
                sys::ncclRedOp_t::ncclSum,
                comm,
                stream,
            )
        }
        .map_err(|e| nccl_failed("ncclAllReduce", e))?;
        self.stream
            .synchronize()
            .map_err(|e| cuda_failed("waiting for the all-reduce", e))
    }

    /// Step 2 to 4 of the module docs on a CubeCL tensor; returns the tensor on the same
    /// buffer (or on the fresh copy step 2 made).
    fn sum_cube(
        &self,
        tensor: CubeTensor<CudaRuntime>,
    ) -> Result<CubeTensor<CudaRuntime>, TrainError> {
        let tensor = owned_contiguous(tensor);
        let count = tensor.meta.shape().num_elements();
        let dtype = nccl_dtype(tensor.dtype)?;
        if count == 0 {
            return Ok(tensor);
        }
        let guard = tensor
            .client
            .get_resource(tensor.handle.clone())
            .map_err(|e| TrainError::Collective(format!("the bucket's CUDA buffer: {e:?}")))?;
        burn_cubecl::cubecl::future::block_on(tensor.client.sync())
            .map_err(|e| TrainError::Collective(format!("finishing the backward pass: {e:?}")))?;
        let resource = guard.resource();
        let bytes = count * tensor.dtype.size();
        if (resource.size as usize) < bytes {
            return Err(TrainError::Collective(format!(
                "the bucket's CUDA buffer holds {} bytes, its {count} elements need {bytes}",
                resource.size
            )));
        }
        // SAFETY: the buffer holds `count` elements (checked above), stays allocated while
        // `guard` lives, and is this tensor's alone (owned_contiguous); the sync above ended
        // every write to it, and nothing else uses it until the tensor is returned.
        unsafe { self.all_reduce_in_place(resource.ptr, count, dtype)? };
        drop(guard);
        Ok(tensor)
    }

    /// Step 1 and 5 of the module docs for a tensor behind burn-fusion.
    fn sum_fused(&self, tensor: FusedCuda) -> Result<FusedCuda, TrainError> {
        let client = tensor.client.clone();
        let cube = client.resolve_tensor_float::<Cube>(tensor);
        // The fusion server may have launched the bucket's kernels from another thread's
        // CubeCL stream: get_resource in sum_cube orders this thread's stream after it, and
        // this sync (run by the fusion server) ends them outright.
        <burn::backend::Cuda as Backend>::sync(&cube.device)
            .map_err(|e| TrainError::Collective(format!("finishing the backward pass: {e:?}")))?;
        let summed = self.sum_cube(cube)?;
        Ok(register(&client, summed))
    }
}

/// The tensor itself when it is contiguous and its buffer is not shared (it can then be
/// written in place), else a contiguous copy — as burn-cubecl's `all_reduce` does.
fn owned_contiguous(tensor: CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
    if tensor.handle.can_mut() && tensor.is_contiguous() {
        return tensor;
    }
    let zeros = burn_cubecl::ops::numeric::zeros_client::<CudaRuntime>(
        tensor.client.clone(),
        tensor.device.clone(),
        tensor.meta.shape().clone(),
        tensor.dtype,
    );
    burn_cubecl::ops::numeric::add(zeros, tensor)
}

/// A CubeCL tensor as a fusion tensor of `client`: its buffer registered as an initialized
/// tensor (what burn-fusion's `float_from_data` does with a fresh one).
fn register(client: &FusionClient, tensor: CubeTensor<CudaRuntime>) -> FusedCuda {
    let shape = tensor.meta.shape().clone();
    let dtype = tensor.dtype;
    let handle = <Cube as BackendIr>::float_tensor_handle(tensor);
    let desc = InitOperationIr::create(shape, dtype, || client.register_tensor_handle(handle));
    client
        .register(
            OperationStreams::default(),
            OperationIr::Init(desc),
            NoOp::<Cube>::new(),
        )
        .output()
}

fn nccl_dtype(dtype: burn::tensor::DType) -> Result<sys::ncclDataType_t, TrainError> {
    use burn::tensor::DType;
    use sys::ncclDataType_t as N;
    match dtype {
        DType::F32 | DType::Flex32 => Ok(N::ncclFloat32),
        DType::F64 => Ok(N::ncclFloat64),
        DType::F16 => Ok(N::ncclFloat16),
        DType::BF16 => Ok(N::ncclBfloat16),
        other => Err(TrainError::Collective(format!(
            "NCCL sums float buckets; this one is {other:?}"
        ))),
    }
}

/// Rank 0's id on every rank, by MPI under an MPI launcher (feature `mpi`), else over TCP at
/// `MASTER_ADDR`; the MPI universe, when MPI carried it, must outlive the communicator.
fn unique_id(
    launch: &Launch,
    dist: &DistSection,
    mine: &[u8; ID_BYTES],
) -> Result<(sys::ncclUniqueId, Option<MpiUniverse>), TrainError> {
    let from_bytes = |b: [u8; ID_BYTES]| sys::ncclUniqueId {
        internal: b.map(|x| x as std::ffi::c_char),
    };
    if launch.world <= 1 {
        return Ok((from_bytes(*mine), None));
    }
    #[cfg(feature = "mpi")]
    if launch.launcher.is_mpi() {
        let (universe, bytes) = crate::dist::mpi::broadcast_from_rank_0(launch, mine)?;
        return Ok((from_bytes(bytes), Some(universe)));
    }
    let Some((host, master_port)) = launch.master.clone() else {
        return Err(TrainError::config(
            "dist.engine",
            format!(
                "NCCL needs rank 0's id on every rank: under {} set MASTER_ADDR (and \
                 MASTER_PORT) to rank 0's host{}",
                launch.launcher,
                match launch.launcher.is_mpi() {
                    true => ", or build with --features mpi so that MPI carries it",
                    false => "",
                }
            ),
        ));
    };
    let meeting = Meeting {
        port: rendezvous::port_for(dist.rendezvous_port, master_port)?,
        token: rendezvous::job_token(
            launch.world,
            &host,
            master_port,
            rendezvous::run_id_from_env().as_deref(),
        ),
        host,
        rank: launch.rank,
        world: launch.world,
        timeout: Duration::from_secs(dist.timeout_s),
    };
    Ok((from_bytes(rendezvous::share(&meeting, mine)?), None))
}

#[cfg(feature = "mpi")]
type MpiUniverse = mpi::environment::Universe;
#[cfg(not(feature = "mpi"))]
type MpiUniverse = std::convert::Infallible;

fn id_bytes(id: &sys::ncclUniqueId) -> [u8; ID_BYTES] {
    id.internal.map(|c| c as u8)
}

/// `ncclCommInitRank` for this process (the device must be bound to the thread).
fn init_rank(launch: &Launch, id: sys::ncclUniqueId) -> Result<sys::ncclComm_t, TrainError> {
    let (world, rank) = match (i32::try_from(launch.world), i32::try_from(launch.rank)) {
        (Ok(w), Ok(r)) => (w, r),
        _ => {
            return Err(TrainError::Collective(format!(
                "{} ranks are too many for NCCL",
                launch.world
            )))
        }
    };
    let mut comm: sys::ncclComm_t = std::ptr::null_mut();
    // SAFETY: `comm` is a valid place for the new communicator; the id is rank 0's, the same
    // on every rank.
    unsafe { nccl::comm_init_rank(&mut comm, world, id, rank) }
        .map_err(|e| nccl_failed("ncclCommInitRank", e))?;
    Ok(comm)
}

fn not_cuda(backend: &str) -> TrainError {
    TrainError::Collective(format!(
        "NCCL needs CUDA tensors; this run's backend is {backend} (use dist.engine = \"mpi\" on \
         the CPU)"
    ))
}

fn cuda_failed(what: &str, e: cudarc::driver::DriverError) -> TrainError {
    TrainError::Collective(format!("NCCL engine, {what}: CUDA error {e:?}"))
}

fn nccl_failed(what: &str, e: nccl::NcclError) -> TrainError {
    TrainError::Collective(format!(
        "{what} failed: {e:?} (NCCL_DEBUG=WARN in the environment makes NCCL say why)"
    ))
}

impl<B: Backend> Engine<B> for NcclEngine<B> {
    fn name(&self) -> &'static str {
        "nccl"
    }

    fn rank(&self) -> Rank {
        self.rank
    }

    fn sum_device(&self, bucket: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        let primitive: Box<dyn Any> = Box::new(bucket.into_primitive().tensor());
        let summed: Box<dyn Any> = match primitive.downcast::<FusedCuda>() {
            Ok(fused) => Box::new(self.sum_fused(*fused)?),
            Err(other) => match other.downcast::<CubeTensor<CudaRuntime>>() {
                Ok(cube) => Box::new(self.sum_cube(*cube)?),
                Err(_) => return Err(not_cuda(&self.backend)),
            },
        };
        match summed.downcast::<B::FloatTensorPrimitive>() {
            Ok(p) => Ok(Tensor::from_primitive(TensorPrimitive::Float(*p))),
            Err(_) => Err(not_cuda(&self.backend)),
        }
    }

    fn sum_host(&self, values: &[f32]) -> Result<Vec<f32>, TrainError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |what: &str, e| cuda_failed(what, e);
        let mut buf = self
            .stream
            .clone_htod(values)
            .map_err(|e| failed("copying host values to the device", e))?;
        {
            let (ptr, _record) = buf.device_ptr_mut(&self.stream);
            // SAFETY: `buf` is this function's own allocation of `values.len()` f32 on the
            // engine's device and stream; it outlives the call.
            unsafe {
                self.all_reduce_in_place(ptr, values.len(), sys::ncclDataType_t::ncclFloat32)?
            };
        }
        let out = self
            .stream
            .clone_dtoh(&buf)
            .map_err(|e| failed("copying the sums to the host", e))?;
        self.stream
            .synchronize()
            .map_err(|e| failed("waiting for the copy", e))?;
        Ok(out)
    }

    fn aborter(&self) -> Option<Aborter> {
        let comm = Arc::clone(&self.comm);
        Some(Arc::new(move || comm.abort()))
    }

    fn finish(&self) -> Result<(), TrainError> {
        nccl_lib::catch(&self.candidates, || self.comm.finish())?
    }
}
