// Result<T>: an expected-style return type for operations that can fail.
//
// The engine libraries (base, isolate, cgroup, seccomp) never throw; every fallible operation
// returns Result<T> or Status (= Result<void>). An Error carries a stable code, the errno that
// caused it (0 when none), a message that says what to do, and free-form context (the path, the
// stage). Codes map to HTTP statuses only in api/.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace sbx {

enum class ErrorCode {
  kInvalidArgument,   // the caller's input is wrong; fix the input
  kNotFound,          // a named thing (file, profile, cgroup) does not exist
  kPermissionDenied,  // the host refused (EPERM/EACCES); usually a privilege or delegation issue
  kUnavailable,       // a host feature is missing (no user namespaces, no cgroup controller)
  kInternal,          // a syscall failed for another reason
  kAlreadyExists,
  kFailedPrecondition,  // the object is in the wrong state for this operation
  kResourceExhausted,   // a configured capacity is full (a queue); retry later
  kAborted,             // changed by someone else meanwhile (an optimistic write); read again
};

const char* ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  int sys_errno = 0;
  std::string message;
  std::string context;

  // "message: strerror (context)" for logs and CLI output.
  std::string ToString() const;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return Status(); }

// Error built from the current errno: ErrnoError("mkdir {}", path).
template <typename... Args>
Error ErrnoError(fmt::format_string<Args...> f, Args&&... args) {
  int e = errno;
  ErrorCode code = ErrorCode::kInternal;
  if (e == EPERM || e == EACCES) code = ErrorCode::kPermissionDenied;
  if (e == ENOENT) code = ErrorCode::kNotFound;
  if (e == EEXIST) code = ErrorCode::kAlreadyExists;
  if (e == ENOSYS || e == EOPNOTSUPP) code = ErrorCode::kUnavailable;
  return Error{code, e, fmt::format(f, std::forward<Args>(args)...), {}};
}

// Same with an explicit errno value (for APIs that return -errno, such as libseccomp).
template <typename... Args>
Error ErrnoValueError(int e, fmt::format_string<Args...> f, Args&&... args) {
  errno = e;
  return ErrnoError(f, std::forward<Args>(args)...);
}

template <typename... Args>
Error MakeError(ErrorCode code, fmt::format_string<Args...> f, Args&&... args) {
  return Error{code, 0, fmt::format(f, std::forward<Args>(args)...), {}};
}

// Adds context to an error on its way up: return WithContext(std::move(r).error(), "cgroup {}", p).
Error WithContext(Error e, std::string context);

}  // namespace sbx

// Propagates an error from an expression returning Result/Status. Only for early returns; it
// hides nothing else.
#define SBX_TRY(expr)                                    \
  do {                                                   \
    auto sbx_try_r_ = (expr);                            \
    if (!sbx_try_r_.ok()) return std::move(sbx_try_r_).error(); \
  } while (0)
