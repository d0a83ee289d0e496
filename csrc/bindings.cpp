// nanobind module inspo_ext._C: zero-copy DLPack views of torch tensors, one function per op.
//
// Every op is bound twice (T = float, double) under one name; every array argument is `.noconvert()`,
// so a wrong dtype, a non-contiguous layout or another device raises TypeError instead of making a
// hidden copy (an output written into a hidden copy would be lost). The Python layer checks shapes,
// dtypes, devices and contiguity first with messages naming the argument; the checks here are a
// second line of defence (they raise ValueError).
//
// Calling convention (Python layer: python/inspo_ext/_backend.py):
//   CPU tensors:  status = _C.OP(inputs..., outputs..., scalars..., num_threads=n)
//                 -> the packed status (common/args.h); kStatusOk = 2**63 - 1 when the inputs are valid.
//   CUDA tensors: _C.OP(..., stream=torch.cuda.current_stream().cuda_stream, status=<int64 [1] tensor
//                 on the device, filled with 2**63 - 1>, workspace=<uint8 tensor of
//                 _C.cuda_workspace_bytes(OP, S, B, N, A, dtype_is_double) bytes>) -> returns immediately;
//                 errors are atomicMin'ed into `status` on the stream.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/backends.h"

#if defined(INSPO_WITH_OPENMP)
#include <omp.h>
#endif
#if defined(INSPO_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace {

template <typename T>
using In = nb::ndarray<const T, nb::c_contig>;
template <typename T>
using Out = nb::ndarray<T, nb::c_contig>;
using Status = std::optional<Out<int64_t>>;
using Workspace = std::optional<Out<uint8_t>>;

using Shape = std::vector<int64_t>;

// An op's arrays may carry a leading problem dimension S (common/args.h): `lead` is {} or {S}, and
// shaped(lead, {B, N}) the expected shape.
Shape shaped(const Shape& lead, std::initializer_list<int64_t> dims) {
  Shape shape = lead;
  shape.insert(shape.end(), dims);
  return shape;
}

// The leading dims and (B, N, A) of a [..., B, N, A] array with `inner` = 3 trailing dims (or
// [..., B, N] with inner = 2, A = 1): lead = {} when it has `inner` dims, {S} with one more; (-1, ...)
// when it has neither (the shape check below then fails).
struct Dims {
  Shape lead;
  int64_t S = 1, B = -1, N = -1, A = 1;
};
template <typename Array>
Dims dims_of(const Array& a, size_t inner) {
  Dims d;
  if (a.ndim() != inner && a.ndim() != inner + 1) return d;
  const size_t o = a.ndim() - inner;
  if (o == 1) {
    d.S = int64_t(a.shape(0));
    d.lead = {d.S};
  }
  d.B = int64_t(a.shape(o));
  d.N = int64_t(a.shape(o + 1));
  if (inner == 3) d.A = int64_t(a.shape(o + 2));
  return d;
}

// All arrays of one call must live on one device (CPU, or one CUDA device); shapes are checked here.
class Call {
 public:
  template <typename Array>
  void check(const Array& a, const char* name, std::initializer_list<int64_t> shape) {
    check(a, name, Shape(shape));
  }
  template <typename Array>
  void check(const Array& a, const char* name, const Shape& shape) {
    if (!have_device_) {
      device_type_ = a.device_type();
      device_id_ = a.device_id();
      first_ = name;
      have_device_ = true;
    } else if (a.device_type() != device_type_ || a.device_id() != device_id_) {
      throw std::invalid_argument(std::string(name) + " is on another device than " + first_);
    }
    bool ok = a.ndim() == shape.size();
    size_t d = 0;
    for (int64_t expected : shape) {
      ok = ok && int64_t(a.shape(d)) == expected;
      ++d;
    }
    if (!ok) throw std::invalid_argument(std::string(name) + " has the wrong shape");
  }
  template <typename Array>
  void check(const std::optional<Array>& a, const char* name, const Shape& shape) {
    if (a) check(*a, name, shape);
  }
  // order: [N], or [S, N] when the call has S problems; returns its stride (0 or N).
  int64_t check_order(const In<int64_t>& order, const Dims& d) {
    if (!d.lead.empty() && order.ndim() == 2) {
      check(order, "order", {d.S, d.N});
      return d.N;
    }
    check(order, "order", {d.N});
    return 0;
  }

  bool cuda() const {
    if (device_type_ == nb::device::cpu::value) return false;
    if (device_type_ == nb::device::cuda::value) {
#if defined(INSPO_WITH_CUDA)
      return true;
#else
      throw std::invalid_argument("this build of inspo_ext has no CUDA backend");
#endif
    }
    throw std::invalid_argument("inspo_ext supports CPU and CUDA tensors only");
  }

  // CUDA status pointer (a device int64 [1]) and workspace of a CUDA call.
  int64_t* status_pointer(Status& status) {
    if (!status) throw std::invalid_argument("a CUDA call needs `status` (a device int64 tensor of shape [1])");
    check(*status, "status", {1});
    return status->data();
  }
  template <typename T>
  void workspace(Workspace& ws, T& args) {
    if (ws) {
      check(*ws, "workspace", {int64_t(ws->shape(0))});
      args.workspace = ws->data();
      args.workspace_bytes = int64_t(ws->shape(0));
    } else {
      args.workspace = nullptr;
      args.workspace_bytes = 0;
    }
  }

 private:
  bool have_device_ = false;
  int32_t device_type_ = 0, device_id_ = 0;
  const char* first_ = "";
};

template <typename T>
const T* optional_data(const std::optional<In<T>>& a) {
  return a ? a->data() : nullptr;
}

// The dispatch tail of every op: the CUDA backend for CUDA arrays (status and workspace from the
// caller), else the CPU backend; inspo::run_cpu / run_cuda pick the op by its argument struct.
template <typename Args>
int64_t run(Call& c, Args& args, uintptr_t stream, Status& status, Workspace& workspace) {
  c.workspace(workspace, args);
  if (c.cuda()) {
#if defined(INSPO_WITH_CUDA)
    int64_t* status_device = c.status_pointer(status);
    nb::gil_scoped_release release;
    inspo::run_cuda(args, reinterpret_cast<void*>(stream), status_device);
    return inspo::kStatusOk;
#else
    (void)stream, (void)status;  // unreachable: Call::cuda() throws in a build without CUDA
#endif
  }
  nb::gil_scoped_release release;
  return inspo::run_cpu(args);
}

// The trailing keywords of every op's binding (see the calling convention above).
#define INSPO_BACKEND_KEYWORDS                                                     \
  "num_threads"_a = 1, "stream"_a = 0, "status"_a.noconvert().none() = nb::none(), \
  "workspace"_a.noconvert().none() = nb::none()

// ---- ops --------------------------------------------------------------------------------------------

template <typename T>
int64_t soft_bellman_target(In<T> reward, In<T> done, In<T> q_next, In<T> next_logits, In<T> next_log_mu,
                            In<bool> next_avail, In<int64_t> next_actions, Out<T> target, Out<T> kl, Out<T> entropy,
                            Out<T> log_ratio, double gamma, double alpha, double beta, double log_rho_max,
                            int num_threads, uintptr_t stream, Status status, Workspace workspace) {
  const Dims d = dims_of(next_logits, 3);
  const int64_t B = d.B, N = d.N, A = d.A;
  const Shape& l = d.lead;
  Call c;
  c.check(next_logits, "next_logits", shaped(l, {B, N, A}));
  c.check(reward, "reward", shaped(l, {B}));
  c.check(done, "done", shaped(l, {B}));
  c.check(q_next, "q_next", shaped(l, {B}));
  c.check(next_log_mu, "next_log_mu", shaped(l, {B, N, A}));
  c.check(next_avail, "next_avail", shaped(l, {B, N, A}));
  c.check(next_actions, "next_actions", shaped(l, {B, N}));
  c.check(target, "target", shaped(l, {B}));
  c.check(kl, "kl", shaped(l, {B, N}));
  c.check(entropy, "entropy", shaped(l, {B, N}));
  c.check(log_ratio, "log_ratio", shaped(l, {B}));
  inspo::SoftBellmanTargetArgs<T> args{reward.data(),
                                       done.data(),
                                       q_next.data(),
                                       next_logits.data(),
                                       next_log_mu.data(),
                                       next_avail.data(),
                                       next_actions.data(),
                                       target.data(),
                                       kl.data(),
                                       entropy.data(),
                                       log_ratio.data(),
                                       d.S * B,
                                       N,
                                       A,
                                       gamma,
                                       alpha,
                                       beta,
                                       log_rho_max,
                                       num_threads,
                                       nullptr,
                                       0};
  return run(c, args, stream, status, workspace);
}

template <typename T>
int64_t in_sample_weights(In<T> q_local, In<T> log_mu, In<bool> avail, In<int64_t> actions, Out<T> weight,
                          Out<T> log_weight, Out<T> value, double alpha, double beta, double log_w_max, int num_threads,
                          uintptr_t stream, Status status, Workspace workspace) {
  const Dims d = dims_of(q_local, 3);
  const int64_t B = d.B, N = d.N, A = d.A;
  const Shape& l = d.lead;
  Call c;
  c.check(q_local, "q_local", shaped(l, {B, N, A}));
  c.check(log_mu, "log_mu", shaped(l, {B, N, A}));
  c.check(avail, "avail", shaped(l, {B, N, A}));
  c.check(actions, "actions", shaped(l, {B, N}));
  c.check(weight, "weight", shaped(l, {B, N}));
  c.check(log_weight, "log_weight", shaped(l, {B, N}));
  c.check(value, "value", shaped(l, {B, N}));
  inspo::InSampleWeightsArgs<T> args{q_local.data(),
                                     log_mu.data(),
                                     avail.data(),
                                     actions.data(),
                                     weight.data(),
                                     log_weight.data(),
                                     value.data(),
                                     d.S * B,
                                     N,
                                     A,
                                     alpha,
                                     beta,
                                     log_w_max,
                                     num_threads,
                                     nullptr,
                                     0};
  return run(c, args, stream, status, workspace);
}

template <typename T>
int64_t teammate_log_ratios(In<T> logits, In<T> log_mu, In<bool> avail, In<int64_t> actions, In<int64_t> order,
                            std::optional<In<T>> q_local, std::optional<In<T>> updated_log_probs, Out<T> log_rho,
                            int predecessors, double alpha, double beta, double eta, double log_rho_max,
                            int num_threads, uintptr_t stream, Status status, Workspace workspace) {
  const Dims d = dims_of(logits, 3);
  const int64_t B = d.B, N = d.N, A = d.A;
  const Shape& l = d.lead;
  Call c;
  c.check(logits, "logits", shaped(l, {B, N, A}));
  c.check(log_mu, "log_mu", shaped(l, {B, N, A}));
  c.check(avail, "avail", shaped(l, {B, N, A}));
  c.check(actions, "actions", shaped(l, {B, N}));
  const int64_t order_stride = c.check_order(order, d);
  c.check(q_local, "q_local", shaped(l, {B, N, A}));
  c.check(updated_log_probs, "updated_log_probs", shaped(l, {B, N}));
  c.check(log_rho, "log_rho", shaped(l, {B, N}));
  if (predecessors == inspo::kPredecessorsTarget && !q_local)
    throw std::invalid_argument("predecessors='target' needs q_local");
  if (predecessors == inspo::kPredecessorsPolicy && !updated_log_probs)
    throw std::invalid_argument("predecessors='policy' needs updated_log_probs");
  if (predecessors != inspo::kPredecessorsTarget && predecessors != inspo::kPredecessorsPolicy)
    throw std::invalid_argument("unknown predecessors mode");
  inspo::TeammateLogRatiosArgs<T> args{logits.data(),
                                       log_mu.data(),
                                       avail.data(),
                                       actions.data(),
                                       order.data(),
                                       optional_data(q_local),
                                       optional_data(updated_log_probs),
                                       log_rho.data(),
                                       d.S,
                                       B,
                                       N,
                                       A,
                                       order_stride,
                                       predecessors,
                                       alpha,
                                       beta,
                                       eta,
                                       log_rho_max,
                                       num_threads,
                                       nullptr,
                                       0};
  return run(c, args, stream, status, workspace);
}

template <typename T>
int64_t resample(In<T> log_rho, In<double> uniforms, Out<int64_t> indices, Out<T> ess, int method, int num_threads,
                 uintptr_t stream, Status status, Workspace workspace) {
  const Dims d = dims_of(log_rho, 2);
  const int64_t B = d.B, N = d.N;
  const Shape& l = d.lead;
  if (method != inspo::kResampleMultinomial && method != inspo::kResampleSystematic)
    throw std::invalid_argument("unknown resampling method");
  Call c;
  c.check(log_rho, "log_rho", shaped(l, {B, N}));
  c.check(uniforms, "uniforms", shaped(l, {method == inspo::kResampleMultinomial ? B : 1, N}));
  c.check(indices, "indices", shaped(l, {B, N}));
  c.check(ess, "ess", shaped(l, {N}));
  if (B < 1) throw std::invalid_argument("log_rho needs at least one sample");
  inspo::ResampleArgs<T> args{log_rho.data(), uniforms.data(), indices.data(), ess.data(), d.S, B, N,
                              method,         num_threads,     nullptr,        0};
  return run(c, args, stream, status, workspace);
}

template <typename T>
int64_t sequential_policy_loss(In<T> logits, In<T> log_mu, In<bool> avail, In<int64_t> actions, In<T> q_local,
                               In<int64_t> order, std::optional<In<T>> updated_log_probs, Out<T> loss,
                               Out<T> mean_weight, Out<T> ess, Out<T> entropy, Out<T> kl, Out<T> norm,
                               std::optional<Out<T>> grad, int predecessors, int ratio, double alpha, double beta,
                               double eta, double log_rho_max, double log_w_max, int num_threads, uintptr_t stream,
                               Status status, Workspace workspace) {
  const Dims d = dims_of(logits, 3);
  const int64_t B = d.B, N = d.N, A = d.A;
  const Shape& l = d.lead;
  Call c;
  c.check(logits, "logits", shaped(l, {B, N, A}));
  c.check(log_mu, "log_mu", shaped(l, {B, N, A}));
  c.check(avail, "avail", shaped(l, {B, N, A}));
  c.check(actions, "actions", shaped(l, {B, N}));
  c.check(q_local, "q_local", shaped(l, {B, N, A}));
  const int64_t order_stride = c.check_order(order, d);
  c.check(updated_log_probs, "updated_log_probs", shaped(l, {B, N}));
  for (auto [out, name] : {std::pair{&loss, "loss"},
                           {&mean_weight, "mean_weight"},
                           {&ess, "ess"},
                           {&entropy, "entropy"},
                           {&kl, "kl"},
                           {&norm, "norm"}})
    c.check(*out, name, shaped(l, {N}));
  c.check(grad, "grad", shaped(l, {B, N, A}));
  if (B < 1) throw std::invalid_argument("logits needs at least one sample");
  if (ratio != inspo::kRatioImportance && ratio != inspo::kRatioSelfNormalized && ratio != inspo::kRatioNone)
    throw std::invalid_argument("unknown ratio mode");
  if (predecessors != inspo::kPredecessorsTarget && predecessors != inspo::kPredecessorsPolicy)
    throw std::invalid_argument("unknown predecessors mode");
  if (ratio != inspo::kRatioNone && predecessors == inspo::kPredecessorsPolicy && !updated_log_probs)
    throw std::invalid_argument("predecessors='policy' needs updated_log_probs");
  inspo::SequentialPolicyLossArgs<T> args{logits.data(),
                                          log_mu.data(),
                                          avail.data(),
                                          actions.data(),
                                          q_local.data(),
                                          order.data(),
                                          optional_data(updated_log_probs),
                                          loss.data(),
                                          mean_weight.data(),
                                          ess.data(),
                                          entropy.data(),
                                          kl.data(),
                                          norm.data(),
                                          grad ? grad->data() : nullptr,
                                          d.S,
                                          B,
                                          N,
                                          A,
                                          order_stride,
                                          predecessors,
                                          ratio,
                                          grad.has_value(),
                                          alpha,
                                          beta,
                                          eta,
                                          log_rho_max,
                                          log_w_max,
                                          num_threads,
                                          nullptr,
                                          0};
  return run(c, args, stream, status, workspace);
}

// Bytes of CUDA workspace an op needs for S problems of B samples (see backends.h); 0 in a build without CUDA.
int64_t cuda_workspace_bytes(const std::string& op, int64_t S, int64_t B, int64_t N, int64_t A, bool is_double) {
#if defined(INSPO_WITH_CUDA)
#define INSPO_WORKSPACE_BYTES(name, Args)                                     \
  if (op == #name)                                                            \
    return is_double ? inspo::name##_cuda_workspace_bytes<double>(S, B, N, A) \
                     : inspo::name##_cuda_workspace_bytes<float>(S, B, N, A);
  INSPO_OPS(INSPO_WORKSPACE_BYTES)
#undef INSPO_WORKSPACE_BYTES
  throw std::invalid_argument("unknown op " + op);
#else
  (void)op, (void)S, (void)B, (void)N, (void)A, (void)is_double;
  return 0;
#endif
}

nb::dict build_info() {
  nb::dict info;
  info["compiler"] = INSPO_CXX_COMPILER;
  info["build_type"] = INSPO_BUILD_TYPE;
#if defined(INSPO_WITH_OPENMP)
  info["openmp"] = true;
  info["openmp_max_threads"] = omp_get_max_threads();
#else
  info["openmp"] = false;
  info["openmp_max_threads"] = 1;
#endif
#if defined(INSPO_WITH_CUDA)
  info["cuda"] = true;
  info["cuda_version"] = INSPO_CUDA_VERSION;
  info["cuda_architectures"] = INSPO_CUDA_ARCHS;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaSuccess) {
    info["cuda_device_available"] = count > 0;
    info["cuda_device_count"] = count;
    info["cuda_device_error"] = nb::none();
  } else {
    info["cuda_device_available"] = false;
    info["cuda_device_count"] = 0;
    info["cuda_device_error"] = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    (void)cudaGetLastError();  // reset the runtime error state for later calls
  }
#else
  info["cuda"] = false;
  info["cuda_version"] = nb::none();
  info["cuda_architectures"] = nb::none();
  info["cuda_device_available"] = false;
  info["cuda_device_count"] = 0;
  info["cuda_device_error"] = "this build has no CUDA backend";
#endif
  return info;
}

template <typename T>
void bind_ops(nb::module_& m) {
  m.def("soft_bellman_target", &soft_bellman_target<T>, "reward"_a.noconvert(), "done"_a.noconvert(),
        "q_next"_a.noconvert(), "next_logits"_a.noconvert(), "next_log_mu"_a.noconvert(), "next_avail"_a.noconvert(),
        "next_actions"_a.noconvert(), "target"_a.noconvert(), "kl"_a.noconvert(), "entropy"_a.noconvert(),
        "log_ratio"_a.noconvert(), "gamma"_a, "alpha"_a, "beta"_a, "log_rho_max"_a, INSPO_BACKEND_KEYWORDS);
  m.def("in_sample_weights", &in_sample_weights<T>, "q_local"_a.noconvert(), "log_mu"_a.noconvert(),
        "avail"_a.noconvert(), "actions"_a.noconvert(), "weight"_a.noconvert(), "log_weight"_a.noconvert(),
        "value"_a.noconvert(), "alpha"_a, "beta"_a, "log_w_max"_a, INSPO_BACKEND_KEYWORDS);
  m.def("teammate_log_ratios", &teammate_log_ratios<T>, "logits"_a.noconvert(), "log_mu"_a.noconvert(),
        "avail"_a.noconvert(), "actions"_a.noconvert(), "order"_a.noconvert(), "q_local"_a.noconvert().none(),
        "updated_log_probs"_a.noconvert().none(), "log_rho"_a.noconvert(), "predecessors"_a, "alpha"_a, "beta"_a,
        "eta"_a, "log_rho_max"_a, INSPO_BACKEND_KEYWORDS);
  m.def("resample", &resample<T>, "log_rho"_a.noconvert(), "uniforms"_a.noconvert(), "indices"_a.noconvert(),
        "ess"_a.noconvert(), "method"_a, INSPO_BACKEND_KEYWORDS);
  m.def("sequential_policy_loss", &sequential_policy_loss<T>, "logits"_a.noconvert(), "log_mu"_a.noconvert(),
        "avail"_a.noconvert(), "actions"_a.noconvert(), "q_local"_a.noconvert(), "order"_a.noconvert(),
        "updated_log_probs"_a.noconvert().none(), "loss"_a.noconvert(), "mean_weight"_a.noconvert(),
        "ess"_a.noconvert(), "entropy"_a.noconvert(), "kl"_a.noconvert(), "norm"_a.noconvert(),
        "grad"_a.noconvert().none(), "predecessors"_a, "ratio"_a, "alpha"_a, "beta"_a, "eta"_a, "log_rho_max"_a,
        "log_w_max"_a, INSPO_BACKEND_KEYWORDS);
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "inspo_ext compiled backends (CPU OpenMP; CUDA when built with it). Use the inspo_ext functions.";
  bind_ops<float>(m);
  bind_ops<double>(m);
  m.def("cuda_workspace_bytes", &cuda_workspace_bytes, "op"_a, "S"_a, "B"_a, "N"_a, "A"_a, "is_double"_a);
  m.def("build_info", &build_info);
  m.attr("STATUS_OK") = inspo::kStatusOk;
#if defined(INSPO_WITH_CUDA)
  m.attr("WITH_CUDA") = true;  // a constant: unlike build_info(), reading it never initializes CUDA
#else
  m.attr("WITH_CUDA") = false;
#endif
  m.attr("STATUS_CODE_BITS") = inspo::kStatusCodeBits;
  nb::dict codes;  // the error codes, NAME -> value (python/inspo_ext/_validation.py StatusCode)
#define INSPO_STATUS_ENTRY(Name, NAME, value) codes[#NAME] = int64_t(inspo::k##Name);
  INSPO_STATUS_CODES(INSPO_STATUS_ENTRY)
#undef INSPO_STATUS_ENTRY
  m.attr("STATUS_CODES") = codes;
}
