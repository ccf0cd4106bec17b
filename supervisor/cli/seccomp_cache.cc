#include "supervisor/cli/seccomp_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>

#include "base/fs.h"

namespace sbx::supervisor {
namespace {

constexpr std::string_view kMagic = "SBXBPF2\n";

uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string CacheKey(std::string_view source, const std::string& name,
                     const seccomp::CompileOptions& options) {
  struct utsname u;
  ::uname(&u);
  std::string key = fmt::format("name={}\nkernel={}\ncompiler={}\nkernel_opt={}\nnotify={}\ncaps=",
                                name, u.release, seccomp::CompilerVersion(),
                                options.kernel_version, options.notify_errors ? 1 : 0);
  for (const auto& c : options.caps) key += c + ",";
  key += "\nsource=";
  key.append(source);
  return key;
}

void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

bool GetU32(std::string_view& in, uint32_t* v) {
  if (in.size() < 4) return false;
  std::memcpy(v, in.data(), 4);
  in.remove_prefix(4);
  return true;
}

std::optional<seccomp::Program> Load(const std::string& path, const std::string& key,
                                     const std::string& name) {
  auto data = ReadFile(path, 16 << 20);
  if (!data.ok()) return std::nullopt;
  std::string_view in = *data;
  if (in.substr(0, kMagic.size()) != kMagic) return std::nullopt;
  in.remove_prefix(kMagic.size());
  uint32_t klen, n;
  if (!GetU32(in, &klen) || in.size() < klen || in.substr(0, klen) != key) return std::nullopt;
  in.remove_prefix(klen);
  uint32_t notify, m;
  if (!GetU32(in, &notify) || !GetU32(in, &n) || !GetU32(in, &m) ||
      in.size() != (static_cast<size_t>(n) + m) * sizeof(sock_filter) || notify > 2) {
    return std::nullopt;
  }
  seccomp::Program p;
  p.profile_name = name;
  p.notify = static_cast<seccomp::NotifyMode>(notify);
  p.insns.resize(n);
  std::memcpy(p.insns.data(), in.data(), n * sizeof(sock_filter));
  p.answers.resize(m);
  std::memcpy(p.answers.data(), in.data() + n * sizeof(sock_filter), m * sizeof(sock_filter));
  return p;
}

void Store(const std::string& dir, const std::string& path, const std::string& key,
           const seccomp::Program& p) {
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return;
  std::string blob(kMagic);
  PutU32(blob, static_cast<uint32_t>(key.size()));
  blob += key;
  PutU32(blob, static_cast<uint32_t>(p.notify));
  PutU32(blob, static_cast<uint32_t>(p.insns.size()));
  PutU32(blob, static_cast<uint32_t>(p.answers.size()));
  blob.append(reinterpret_cast<const char*>(p.insns.data()), p.insns.size() * sizeof(sock_filter));
  blob.append(reinterpret_cast<const char*>(p.answers.data()),
              p.answers.size() * sizeof(sock_filter));
  std::string tmp = fmt::format("{}.{}.tmp", path, ::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return;
  if (!WriteAll(fd.get(), blob).ok() || ::rename(tmp.c_str(), path.c_str()) < 0) {
    ::unlink(tmp.c_str());
  }
}

}  // namespace

Result<seccomp::Program> CompileProfileCached(std::string_view source, const std::string& name,
                                              const std::string& cache_dir,
                                              const seccomp::CompileOptions& options) {
  std::string key = CacheKey(source, name, options);
  std::string path = fmt::format("{}/{:016x}.bpf", cache_dir, Fnv1a64(key));
  if (auto hit = Load(path, key, name)) return std::move(*hit);
  auto profile = seccomp::ParseProfile(source, name);
  if (!profile.ok()) return std::move(profile).error();
  auto prog = seccomp::Compile(*profile, options);
  if (!prog.ok()) return std::move(prog).error();
  Store(cache_dir, path, key, *prog);
  return prog;
}

}  // namespace sbx::supervisor
