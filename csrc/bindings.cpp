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
//                 on the device, holding 2**63 - 1 or an earlier error>, workspace=<uint8 tensor of
//                 _C.cuda_workspace_bytes(OP, S, B, N, A, dtype_is_double) bytes>) -> returns immediately;
//                 errors are atomicMin'ed into `status` on the stream, launched on the arrays' device.
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
#if defined(__linux__)
#include <sys/mman.h>
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

  int32_t device_id() const { return device_id_; }

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

#if defined(INSPO_WITH_CUDA)
// Makes the arrays' device current for the launch and restores the caller's. This module links its own
// (static) CUDA runtime, whose current device is not torch's: without it a tensor on cuda:1 would be
// launched on device 0. Neither call touches a stream, so both are allowed during a graph capture.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~CudaDeviceGuard() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) (void)cudaSetDevice(previous_);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  static void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
      throw std::runtime_error(std::string("inspo_ext: ") + what + " failed: " + cudaGetErrorName(err) + ": " +
                               cudaGetErrorString(err));
  }
  int previous_ = 0;
};
#endif

// The dispatch tail of every op: the CUDA backend for CUDA arrays (status and workspace from the
// caller), else the CPU backend; inspo::run_cpu / run_cuda pick the op by its argument struct.
template <typename Args>
int64_t run(Call& c, Args& args, uintptr_t stream, Status& status, Workspace& workspace) {
  c.workspace(workspace, args);
  if (c.cuda()) {
#if defined(INSPO_WITH_CUDA)
    int64_t* status_device = c.status_pointer(status);
    nb::gil_scoped_release release;
    CudaDeviceGuard device(c.device_id());
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
// Each op's _C function is generated from its field table (OPArgs_FIELDS in common/args.h): one parameter per
// array and scalar field, in the table's order, then the backend keywords; the body checks every array's shape,
// fills the argument struct, rejects what invalid_args(args) rejects and runs the backend.

// The function's parameters.
#define INSPO_PARAM(kind, type, name, what) INSPO_PARAM_##kind(type, name)
#define INSPO_PARAM_first(type, name) In<type> name,
#define INSPO_PARAM_in(type, name) In<type> name,
#define INSPO_PARAM_in_opt(type, name) std::optional<In<type>> name,
#define INSPO_PARAM_order(type, name) In<type> name,
#define INSPO_PARAM_out(type, name) Out<type> name,
#define INSPO_PARAM_out_opt(type, name) std::optional<Out<type>> name,
#define INSPO_PARAM_stride(type, name)
#define INSPO_PARAM_count(type, name)
#define INSPO_PARAM_present(type, name)
#define INSPO_PARAM_scalar(type, name) type name,

// Its keywords (m.def).
#define INSPO_KEYWORD(kind, type, name, what) INSPO_KEYWORD_##kind(name)
#define INSPO_KEYWORD_first(name) nb::arg(#name).noconvert(),
#define INSPO_KEYWORD_in(name) nb::arg(#name).noconvert(),
#define INSPO_KEYWORD_in_opt(name) nb::arg(#name).noconvert().none(),
#define INSPO_KEYWORD_order(name) nb::arg(#name).noconvert(),
#define INSPO_KEYWORD_out(name) nb::arg(#name).noconvert(),
#define INSPO_KEYWORD_out_opt(name) nb::arg(#name).noconvert().none(),
#define INSPO_KEYWORD_stride(name)
#define INSPO_KEYWORD_count(name)
#define INSPO_KEYWORD_present(name)
#define INSPO_KEYWORD_scalar(name) nb::arg(#name),

// The call's sizes, from the `first` array: its dims count fixes whether it carries S.
#define INSPO_UNPAREN(...) __VA_ARGS__
#define INSPO_COUNT(...) INSPO_COUNT_(__VA_ARGS__, 3, 2, 1, 0)
#define INSPO_COUNT_(a, b, c, n, ...) n
#define INSPO_SIZES(kind, type, name, what) INSPO_SIZES_##kind(name, what)
#define INSPO_SIZES_first(name, shape) sizes = dims_of(name, INSPO_COUNT shape);
#define INSPO_SIZES_in(name, what)
#define INSPO_SIZES_in_opt(name, what)
#define INSPO_SIZES_order(name, what)
#define INSPO_SIZES_out(name, what)
#define INSPO_SIZES_out_opt(name, what)
#define INSPO_SIZES_stride(name, what)
#define INSPO_SIZES_count(name, what)
#define INSPO_SIZES_present(name, what)
#define INSPO_SIZES_scalar(name, what)

// Its shape checks, in the table's order (an order array returns its stride).
#define INSPO_CHECK(kind, type, name, what) INSPO_CHECK_##kind(name, what)
#define INSPO_CHECK_first(name, shape) c.check(name, #name, shaped(lead, {INSPO_UNPAREN shape}));
#define INSPO_CHECK_in(name, shape) c.check(name, #name, shaped(lead, {INSPO_UNPAREN shape}));
#define INSPO_CHECK_in_opt(name, shape) c.check(name, #name, shaped(lead, {INSPO_UNPAREN shape}));
#define INSPO_CHECK_order(name, shape) const int64_t name##_stride = c.check_order(name, sizes);
#define INSPO_CHECK_out(name, shape) c.check(name, #name, shaped(lead, {INSPO_UNPAREN shape}));
#define INSPO_CHECK_out_opt(name, shape) c.check(name, #name, shaped(lead, {INSPO_UNPAREN shape}));
#define INSPO_CHECK_stride(name, what)
#define INSPO_CHECK_count(name, what)
#define INSPO_CHECK_present(name, what)
#define INSPO_CHECK_scalar(name, what)

// The argument struct's fields.
#define INSPO_FILL(kind, type, name, what) INSPO_FILL_##kind(name, what)
#define INSPO_FILL_first(name, what) args.name = name.data();
#define INSPO_FILL_in(name, what) args.name = name.data();
#define INSPO_FILL_in_opt(name, what) args.name = name ? name->data() : nullptr;
#define INSPO_FILL_order(name, what) args.name = name.data();
#define INSPO_FILL_out(name, what) args.name = name.data();
#define INSPO_FILL_out_opt(name, what) args.name = name ? name->data() : nullptr;
#define INSPO_FILL_stride(name, order) args.name = order##_stride;
#define INSPO_FILL_count(name, expr) args.name = (expr);
#define INSPO_FILL_present(name, array) args.name = array.has_value();
#define INSPO_FILL_scalar(name, what) args.name = name;

// clang-format off
#define INSPO_DEFINE_BINDING(op, Args)                                                                           \
  template <typename T>                                                                                          \
  int64_t op(Args##_FIELDS(INSPO_PARAM) int num_threads, uintptr_t stream, Status status, Workspace workspace) { \
    Dims sizes;                                                                                                  \
    Args##_FIELDS(INSPO_SIZES)                                                                                   \
    const Shape& lead = sizes.lead;                                                                              \
    const int64_t S = sizes.S, B = sizes.B, N = sizes.N, A = sizes.A;                                            \
    (void)S, (void)A;                                                                                            \
    Call c;                                                                                                      \
    Args##_FIELDS(INSPO_CHECK)                                                                                   \
    inspo::Args<T> args{};                                                                                       \
    Args##_FIELDS(INSPO_FILL)                                                                                    \
    args.num_threads = num_threads;                                                                              \
    if (const char* invalid = inspo::invalid_args(args)) throw std::invalid_argument(invalid);                   \
    return run(c, args, stream, status, workspace);                                                              \
  }
// clang-format on
INSPO_OPS(INSPO_DEFINE_BINDING)
#undef INSPO_DEFINE_BINDING

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

// Asks Linux for transparent huge pages on a fresh CPU buffer before its first write. torch's CPU allocator
// hands out freshly mmap'd memory for large tensors, and their first write faults every 4 KB page (a third of
// sequential_policy_loss's time at B = 64k, N = 8, A = 16); in 2 MB pages that is 512x fewer faults. Only the
// 2 MB-aligned interior of the buffer can be advised; THP in "madvise" mode needs the advice, "always" has
// it already, "never" ignores it. Returns whether anything was advised.
bool advise_huge_pages(nb::ndarray<nb::device::cpu, nb::c_contig> buffer) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t start = reinterpret_cast<uintptr_t>(buffer.data());
  const uintptr_t begin = (start + kHuge - 1) & ~(kHuge - 1), end = (start + buffer.nbytes()) & ~(kHuge - 1);
  if (end <= begin) return false;
  return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0;
#else
  (void)buffer;
  return false;
#endif
}

nb::dict build_info() {
  nb::dict info;
  info["compiler"] = INSPO_CXX_COMPILER;
  info["build_type"] = INSPO_BUILD_TYPE;
  info["source_hash"] = INSPO_SOURCE_HASH;
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
#define INSPO_BIND(op, Args) m.def(#op, &op<T>, Args##_FIELDS(INSPO_KEYWORD) INSPO_BACKEND_KEYWORDS);
  INSPO_OPS(INSPO_BIND)
#undef INSPO_BIND
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "inspo_ext compiled backends (CPU OpenMP; CUDA when built with it). Use the inspo_ext functions.";
  bind_ops<float>(m);
  bind_ops<double>(m);
  nb::list ops;  // the ops' names, in the order of the table (common/backends.h INSPO_OPS)
#define INSPO_OP_NAME(op, Args) ops.append(#op);
  INSPO_OPS(INSPO_OP_NAME)
#undef INSPO_OP_NAME
  m.attr("OPS") = nb::tuple(ops);
  m.def("cuda_workspace_bytes", &cuda_workspace_bytes, "op"_a, "S"_a, "B"_a, "N"_a, "A"_a, "is_double"_a);
  m.def("build_info", &build_info);
  m.def("advise_huge_pages", &advise_huge_pages, "buffer"_a.noconvert());
  nb::dict cpu_paths;  // name -> the values it accepts (inspo_ext/_backend.py warns about any other)
  for (const inspo::CpuPathVariable* v : {&inspo::kCpuVectorBytesVariable, &inspo::kCpuRowTransposeVariable}) {
    nb::list values;
    for (int k = 0; k < v->n_values; ++k) values.append(v->values[k]);
    cpu_paths[v->name] = nb::tuple(values);
  }
  m.attr("CPU_PATH_VARIABLES") = cpu_paths;
  m.attr("STATUS_OK") = inspo::kStatusOk;
  m.attr("SOURCE_HASH") = INSPO_SOURCE_HASH;  // of csrc/ and CMakeLists.txt (see there); a constant, as WITH_CUDA
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
