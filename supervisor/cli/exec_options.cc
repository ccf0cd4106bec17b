#include "supervisor/cli/exec_options.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "base/fs.h"

namespace sbx::supervisor {

std::string ExecUsage() {
  return R"(Usage: sandboxd exec [OPTIONS] [--] COMMAND [ARG...]

Runs COMMAND in a new sandbox, streams its stdout and stderr, and exits with its exit code
(128+N when killed by signal N, 125 when the sandbox could not be set up).

By default every isolation layer is on: new user, pid, mount, network, ipc, uts and cgroup
namespaces; network "none" (loopback only); a read-only root made of read-only binds of the
host's /usr, /bin, /sbin, /lib*; a synthesized /etc; a fresh /proc with sensitive paths masked;
a minimal /dev; a 64 MiB /tmp; an unprivileged user (uid 1000); no capabilities; no_new_privs;
the builtin seccomp profile; no core dumps.

Options:
  -m, --memory SIZE          memory limit, e.g. 256m (swap disabled)
      --cpus N               CPU quota in CPUs, e.g. 0.5
      --pids-limit N         maximum number of processes and threads
      --timeout DURATION     wall-clock limit, e.g. 30s, 500ms, 2m; the whole tree is killed
      --network none|host    "none" (default); "host" keeps the host's network (weakens isolation)
      --security-opt seccomp=FILE|unconfined
                             a seccomp profile in the Docker/OCI JSON format, or none
                             (weakens isolation); no-new-privileges is always on
  -v, --volume SRC:DST[:ro|rw]
                             bind a host path (read-only unless :rw)
      --tmpfs DST[:size=SIZE[,mode=OCTAL]]
                             mount a tmpfs (default size 64m, mode 1777)
  -e, --env KEY=VALUE        set an environment variable (KEY alone copies the host's value)
  -w, --workdir DIR          working directory inside the sandbox (default /)
  -u, --user UID[:GID]       user inside the sandbox (default 1000:1000); 0 is root inside a
                             user namespace mapped to an unprivileged host uid, never host root
      --hostname NAME        hostname inside (default "sandbox")
      --read-only            the root filesystem is read-only (the default; accepted for docker
                             compatibility)
      --tmp-size SIZE        size of /tmp (default 64m)
      --output-limit SIZE    stdout+stderr captured and forwarded; the rest is dropped and the
                             result says output_truncated (default 16m)
      --ulimit-nofile N      RLIMIT_NOFILE (default 1024)
      --ulimit-fsize SIZE    RLIMIT_FSIZE, the largest file it may write (default unlimited)
  -i, --interactive          pass sandboxd's stdin to the command (default /dev/null)
      --result FILE          write the result JSON to FILE ("-" for stdout)
      --cgroup-parent NAME   the parent cgroup sandboxd owns (default "sandboxd")
      --log-level LEVEL      trace, debug, info, warn (default), error
  -h, --help                 this text

Result JSON: reason (exited, signaled, oom_killed, timed_out, cancelled, setup_failed),
exit_code, signal, wall_ms, cpu_ms, memory_peak_bytes, stdout_bytes, stderr_bytes,
output_truncated, isolation, error.
)";
}

namespace {

Result<uint64_t> ParseUint(const std::string& flag, const std::string& v) {
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "{}: '{}' is not a non-negative integer", flag, v);
  }
  return out;
}

Status ParseUser(const std::string& v, isolate::SandboxSpec& s) {
  size_t colon = v.find(':');
  auto uid = ParseUint("--user", v.substr(0, colon));
  if (!uid.ok()) return std::move(uid).error();
  uint64_t gid = *uid;
  if (colon != std::string::npos) {
    auto g = ParseUint("--user", v.substr(colon + 1));
    if (!g.ok()) return std::move(g).error();
    gid = *g;
  }
  if (*uid >= 65536 || gid >= 65536) {
    return MakeError(ErrorCode::kInvalidArgument, "--user: ids must be below 65536");
  }
  s.uid = static_cast<uid_t>(*uid);
  s.gid = static_cast<gid_t>(gid);
  return Ok();
}

Status ParseVolume(const std::string& v, isolate::SandboxSpec& s) {
  // SRC:DST[:ro|rw]
  size_t a = v.find(':');
  if (a == std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "-v '{}': expected SRC:DST[:ro|rw]", v);
  }
  isolate::BindMount b;
  b.source = v.substr(0, a);
  std::string rest = v.substr(a + 1);
  size_t c = rest.find(':');
  b.target = rest.substr(0, c);
  if (c != std::string::npos) {
    std::string mode = rest.substr(c + 1);
    if (mode == "rw") b.writable = true;
    else if (mode != "ro") {
      return MakeError(ErrorCode::kInvalidArgument, "-v '{}': mode must be ro or rw", v);
    }
  }
  if (b.source.empty() || b.target.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "-v '{}': expected SRC:DST[:ro|rw]", v);
  }
  s.binds.push_back(std::move(b));
  return Ok();
}

Status ParseTmpfs(const std::string& v, isolate::SandboxSpec& s) {
  isolate::TmpfsMount t;
  size_t c = v.find(':');
  t.target = v.substr(0, c);
  if (c != std::string::npos) {
    std::string opts = v.substr(c + 1);
    size_t i = 0;
    while (i <= opts.size()) {
      size_t j = opts.find(',', i);
      if (j == std::string::npos) j = opts.size();
      std::string kv = opts.substr(i, j - i);
      i = j + 1;
      if (kv.empty()) continue;
      if (kv.rfind("size=", 0) == 0) {
        auto sz = ParseByteSize(kv.substr(5));
        if (!sz.ok()) return WithContext(std::move(sz).error(), "--tmpfs");
        t.size_bytes = *sz;
      } else if (kv.rfind("mode=", 0) == 0) {
        char* end = nullptr;
        unsigned long m = std::strtoul(kv.c_str() + 5, &end, 8);
        if (*end != '\0' || m > 07777) {
          return MakeError(ErrorCode::kInvalidArgument, "--tmpfs '{}': mode must be octal", v);
        }
        t.mode = static_cast<unsigned>(m);
      } else {
        return MakeError(ErrorCode::kInvalidArgument,
                         "--tmpfs '{}': unknown option '{}' (use size=, mode=)", v, kv);
      }
    }
  }
  s.tmpfs.push_back(std::move(t));
  return Ok();
}

}  // namespace

Result<ExecOptions> ParseExecArgs(const std::vector<std::string>& args) {
  ExecOptions o;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.empty() || a[0] != '-') break;
    std::string value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    auto need = [&]() -> Result<std::string> {
      if (has_inline) return value;
      if (i + 1 >= args.size()) {
        return MakeError(ErrorCode::kInvalidArgument, "{} needs a value", a);
      }
      return args[++i];
    };
    // The value of a size option (256m), or of a count option with a minimum.
    auto size_value = [&](uint64_t* out) -> Status {
      auto v = need();
      if (!v.ok()) return std::move(v).error();
      auto b = ParseByteSize(*v);
      if (!b.ok()) return WithContext(std::move(b).error(), a);
      *out = *b;
      return Ok();
    };
    auto count_value = [&](uint64_t minimum, uint64_t* out) -> Status {
      auto v = need();
      if (!v.ok()) return std::move(v).error();
      auto n = ParseUint(a, *v);
      if (!n.ok()) return std::move(n).error();
      if (*n < minimum) {
        return MakeError(ErrorCode::kInvalidArgument, "{} must be at least {}", a, minimum);
      }
      *out = *n;
      return Ok();
    };

    if (a == "-h" || a == "--help") {
      o.help = true;
    } else if (a == "-m" || a == "--memory") {
      uint64_t bytes = 0;
      SBX_TRY(size_value(&bytes));
      o.sandbox.limits.memory_bytes = bytes;
    } else if (a == "--cpus") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      char* end = nullptr;
      double c = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !std::isfinite(c) || c <= 0) {
        return MakeError(ErrorCode::kInvalidArgument, "--cpus: '{}' must be a positive number", v);
      }
      o.sandbox.limits.cpus = c;
    } else if (a == "--pids-limit") {
      uint64_t pids = 0;
      SBX_TRY(count_value(1, &pids));
      o.sandbox.limits.pids = pids;
    } else if (a == "--timeout") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      auto ms = ParseDurationMs(v);
      if (!ms.ok()) return WithContext(std::move(ms).error(), "--timeout");
      o.process.timeout_ms = *ms;
    } else if (a == "--network" || a == "--net") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      if (v == "none") o.sandbox.allow_host_network = false;
      else if (v == "host") o.sandbox.allow_host_network = true;
      else return MakeError(ErrorCode::kInvalidArgument, "--network: '{}' (use none or host)", v);
    } else if (a == "--security-opt") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      if (v.rfind("seccomp=", 0) == 0 || v.rfind("seccomp:", 0) == 0) {
        o.seccomp = v.substr(8);
        if (o.seccomp.empty()) {
          return MakeError(ErrorCode::kInvalidArgument, "--security-opt seccomp= needs a value");
        }
      } else if (v == "no-new-privileges" || v == "no-new-privileges:true" ||
                 v == "no-new-privileges=true") {
        // Always on.
      } else {
        return MakeError(ErrorCode::kInvalidArgument,
                         "--security-opt '{}': supported are seccomp=FILE|unconfined and "
                         "no-new-privileges",
                         v);
      }
    } else if (a == "-v" || a == "--volume") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      SBX_TRY(ParseVolume(v, o.sandbox));
    } else if (a == "--tmpfs") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      SBX_TRY(ParseTmpfs(v, o.sandbox));
    } else if (a == "-e" || a == "--env") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      if (v.empty() || v[0] == '=') {
        return MakeError(ErrorCode::kInvalidArgument, "--env '{}': expected KEY=VALUE", v);
      }
      if (v.find('=') == std::string::npos) {
        const char* host = std::getenv(v.c_str());
        if (host != nullptr) o.process.env.push_back(v + "=" + host);
      } else {
        o.process.env.push_back(v);
      }
    } else if (a == "-w" || a == "--workdir") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      o.process.cwd = v;
    } else if (a == "-u" || a == "--user") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      SBX_TRY(ParseUser(v, o.sandbox));
    } else if (a == "--hostname") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      if (v.empty() || v.size() > 64) {
        return MakeError(ErrorCode::kInvalidArgument, "--hostname must be 1-64 characters");
      }
      o.sandbox.hostname = v;
    } else if (a == "--read-only") {
      if (has_inline && value != "true") {
        return MakeError(ErrorCode::kInvalidArgument,
                         "--read-only: the root filesystem is always read-only; mount a --tmpfs "
                         "or a -v SRC:DST:rw where the command must write");
      }
    } else if (a == "--tmp-size") {
      SBX_TRY(size_value(&o.sandbox.tmp_size_bytes));
    } else if (a == "--output-limit") {
      SBX_TRY(size_value(&o.process.output_limit_bytes));
    } else if (a == "--ulimit-nofile") {
      SBX_TRY(count_value(3, &o.sandbox.max_open_files));
    } else if (a == "--ulimit-fsize") {
      SBX_TRY(size_value(&o.sandbox.max_file_bytes));
    } else if (a == "-i" || a == "--interactive") {
      o.interactive = true;
    } else if (a == "--result") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      o.result_file = v;
    } else if (a == "--cgroup-parent") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      if (v.empty() || v.find("..") != std::string::npos || v[0] == '/') {
        return MakeError(ErrorCode::kInvalidArgument,
                         "--cgroup-parent '{}' must be a relative name without '..'", v);
      }
      o.cgroup_parent = v;
    } else if (a == "--log-level") {
      auto v_r = need();
      if (!v_r.ok()) return std::move(v_r).error();
      const std::string& v = *v_r;
      o.log_level = v;
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "unknown option '{}' (see sandboxd exec --help)",
                       a);
    }
  }
  for (; i < args.size(); ++i) o.process.argv.push_back(args[i]);
  if (o.process.argv.empty() && !o.help) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no command given (usage: sandboxd exec [OPTIONS] -- COMMAND [ARG...])");
  }
  return o;
}

}  // namespace sbx::supervisor
