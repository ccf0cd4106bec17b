// Command policies: a policy file loaded, then (when it loads) a few fixed commands and a
// sandbox judged by it, and the input's own text judged by the shipped policy as a command line.
#include <cstdint>
#include <string>
#include <string_view>

#include "supervisor/policy/command_policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using sbx::policy::CommandInput;
  using sbx::policy::CommandPolicy;
  if (auto p = CommandPolicy::LoadText(text, "fuzz.yaml"); p.ok()) {
    CommandInput in;
    in.argvs = {{"git", "status"}, {"rm", "-rf", "/"}};
    in.command = "make -j2 && ./run.sh | tee log";
    in.api_key_name = "ci";
    in.labels = {{"team", "infra"}};
    (void)(*p)->Evaluate(in);
    sbx::policy::SandboxShape shape;
    shape.cpus = 2;
    shape.memory_bytes = int64_t{1} << 30;
    shape.pids = 256;
    shape.timeout_s = 3600;
    shape.network = "none";
    shape.backend = "docker";
    shape.image = "busybox:1.36";
    shape.workspace_mode = "cow";
    shape.api_key_name = "ci";
    shape.labels = {{"team", "infra"}};
    (void)(*p)->EvaluateSandbox(shape);
  }
  CommandInput line;
  line.command = std::string(text);
  (void)CommandPolicy::Builtin()->Evaluate(line);
  return 0;
}
