#include <seccomp.h>

#include <charconv>

#include "seccomp/internal.h"

namespace sbx::seccomp::internal {
namespace {

// libseccomp 2.5.4 predates some architectures that Docker's profile names (LoongArch came in
// 2.6); the parser still accepts them, the compiler skips them as foreign arches.
#ifdef SCMP_ARCH_LOONGARCH64
constexpr uint32_t kLoongArch64 = SCMP_ARCH_LOONGARCH64;
#else
constexpr uint32_t kLoongArch64 = 0;
#endif
#ifdef SCMP_ARCH_M68K
constexpr uint32_t kM68k = SCMP_ARCH_M68K;
#else
constexpr uint32_t kM68k = 0;
#endif
#ifdef SCMP_ARCH_SH
constexpr uint32_t kSh = SCMP_ARCH_SH;
constexpr uint32_t kSheb = SCMP_ARCH_SHEB;
#else
constexpr uint32_t kSh = 0;
constexpr uint32_t kSheb = 0;
#endif

constexpr std::string_view kX86[] = {"386", "x86", "i386", "i686"};
constexpr std::string_view kX8664[] = {"amd64", "x86_64"};
constexpr std::string_view kX32[] = {"x32"};
constexpr std::string_view kArm[] = {"arm"};
constexpr std::string_view kAarch64[] = {"arm64", "aarch64"};
constexpr std::string_view kMips[] = {"mips"};
constexpr std::string_view kMips64[] = {"mips64"};
constexpr std::string_view kMips64N32[] = {"mips64p32", "mips64n32"};
constexpr std::string_view kMipsel[] = {"mipsle", "mipsel"};
constexpr std::string_view kMipsel64[] = {"mips64le", "mipsel64"};
constexpr std::string_view kMipsel64N32[] = {"mips64p32le", "mipsel64n32"};
constexpr std::string_view kPpc[] = {"ppc"};
constexpr std::string_view kPpc64[] = {"ppc64"};
constexpr std::string_view kPpc64Le[] = {"ppc64le"};
constexpr std::string_view kS390[] = {"s390"};
constexpr std::string_view kS390X[] = {"s390x"};
constexpr std::string_view kParisc[] = {"parisc"};
constexpr std::string_view kParisc64[] = {"parisc64"};
constexpr std::string_view kRiscv64[] = {"riscv64"};
constexpr std::string_view kLoong64[] = {"loong64", "loongarch64"};
constexpr std::string_view kM68kNames[] = {"m68k"};
constexpr std::string_view kShNames[] = {"sh"};
constexpr std::string_view kShebNames[] = {"sheb"};

constexpr ArchInfo kArchTable[] = {
    {"SCMP_ARCH_X86", SCMP_ARCH_X86, kX86},
    {"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64, kX8664},
    {"SCMP_ARCH_X32", SCMP_ARCH_X32, kX32},
    {"SCMP_ARCH_ARM", SCMP_ARCH_ARM, kArm},
    {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64, kAarch64},
    {"SCMP_ARCH_MIPS", SCMP_ARCH_MIPS, kMips},
    {"SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64, kMips64},
    {"SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32, kMips64N32},
    {"SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL, kMipsel},
    {"SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64, kMipsel64},
    {"SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32, kMipsel64N32},
    {"SCMP_ARCH_PPC", SCMP_ARCH_PPC, kPpc},
    {"SCMP_ARCH_PPC64", SCMP_ARCH_PPC64, kPpc64},
    {"SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE, kPpc64Le},
    {"SCMP_ARCH_S390", SCMP_ARCH_S390, kS390},
    {"SCMP_ARCH_S390X", SCMP_ARCH_S390X, kS390X},
    {"SCMP_ARCH_PARISC", SCMP_ARCH_PARISC, kParisc},
    {"SCMP_ARCH_PARISC64", SCMP_ARCH_PARISC64, kParisc64},
    {"SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64, kRiscv64},
    {"SCMP_ARCH_LOONGARCH64", kLoongArch64, kLoong64},
    {"SCMP_ARCH_M68K", kM68k, kM68kNames},
    {"SCMP_ARCH_SH", kSh, kShNames},
    {"SCMP_ARCH_SHEB", kSheb, kShebNames},
};

// Reads one decimal component; advances s past it.
std::optional<unsigned> TakeNumber(std::string_view* s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || p == s->data()) return std::nullopt;
  s->remove_prefix(static_cast<size_t>(p - s->data()));
  return v;
}

}  // namespace

std::span<const ArchInfo> Arches() { return kArchTable; }

const ArchInfo* FindArchByScmpName(std::string_view scmp_name) {
  for (const ArchInfo& a : kArchTable) {
    if (a.scmp_name == scmp_name) return &a;
  }
  return nullptr;
}

const ArchInfo* FindArchByToken(uint32_t token) {
  if (token == 0) return nullptr;
  for (const ArchInfo& a : kArchTable) {
    if (a.token == token) return &a;
  }
  return nullptr;
}

bool IsKnownArchAlias(std::string_view alias) {
  for (const ArchInfo& a : kArchTable) {
    for (std::string_view n : a.aliases) {
      if (n == alias) return true;
    }
  }
  return false;
}

std::string ArchAliasList() {
  std::string out;
  for (const ArchInfo& a : kArchTable) {
    for (std::string_view n : a.aliases) {
      if (!out.empty()) out += ", ";
      out += n;
    }
  }
  return out;
}

std::string ScmpArchList() {
  std::string out;
  for (const ArchInfo& a : kArchTable) {
    if (!out.empty()) out += ", ";
    out += a.scmp_name;
  }
  return out;
}

std::optional<KernelVersion> ParseMinKernel(std::string_view s) {
  KernelVersion v;
  auto major = TakeNumber(&s);
  if (!major || s.empty() || s.front() != '.') return std::nullopt;
  s.remove_prefix(1);
  auto minor = TakeNumber(&s);
  if (!minor) return std::nullopt;
  v.major = *major;
  v.minor = *minor;
  if (s.empty()) return v;
  if (s.front() != '.') return std::nullopt;
  s.remove_prefix(1);
  auto patch = TakeNumber(&s);
  if (!patch || !s.empty()) return std::nullopt;
  v.patch = *patch;
  return v;
}

std::optional<KernelVersion> ParseKernelRelease(std::string_view s) {
  KernelVersion v;
  auto major = TakeNumber(&s);
  if (!major) return std::nullopt;
  v.major = *major;
  if (s.empty() || s.front() != '.') return v;
  s.remove_prefix(1);
  auto minor = TakeNumber(&s);
  if (!minor) return v;
  v.minor = *minor;
  if (s.empty() || s.front() != '.') return v;
  s.remove_prefix(1);
  if (auto patch = TakeNumber(&s)) v.patch = *patch;
  return v;
}

}  // namespace sbx::seccomp::internal
