#include "supervisor/review/limits.h"

#include <cmath>

namespace sbx::supervisor {

namespace {

Status CheckLimit(const char* field, double value, double max) {
  if (!(value > 0) || !std::isfinite(value)) {
    return MakeError(ErrorCode::kInvalidArgument, "limits.{} must be positive", field);
  }
  if (value > max) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "limits.{} = {} is above the configured maximum {}", field, value, max);
  }
  return Ok();
}

}  // namespace

Result<store::Limits> ResolveLimits(const store::Limits& in, const ServiceLimits& cfg) {
  store::Limits out;
  out.cpus = in.cpus.value_or(cfg.defaults.cpus);
  out.memory_bytes = in.memory_bytes.value_or(cfg.defaults.memory_bytes);
  out.pids = in.pids.value_or(cfg.defaults.pids);
  out.timeout_s = in.timeout_s.value_or(cfg.defaults.timeout_s);
  out.output_bytes = in.output_bytes.value_or(cfg.defaults.output_bytes);
  SBX_TRY(CheckLimit("cpus", *out.cpus, cfg.maxima.cpus));
  SBX_TRY(CheckLimit("memory", static_cast<double>(*out.memory_bytes),
                     static_cast<double>(cfg.maxima.memory_bytes)));
  SBX_TRY(CheckLimit("pids", static_cast<double>(*out.pids), static_cast<double>(cfg.maxima.pids)));
  SBX_TRY(CheckLimit("timeout_s", static_cast<double>(*out.timeout_s),
                     static_cast<double>(cfg.maxima.timeout_s)));
  SBX_TRY(CheckLimit("output_bytes", static_cast<double>(*out.output_bytes),
                     static_cast<double>(cfg.maxima.output_bytes)));
  return out;
}

}  // namespace sbx::supervisor
