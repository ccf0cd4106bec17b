// A classic BPF interpreter restricted to what seccomp accepts (kernel/seccomp.c,
// seccomp_check_filter): 32-bit loads from seccomp_data, ALU, jumps, scratch memory, return.
#include "seccomp/simulate.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <seccomp.h>

#include <cstring>

namespace sbx::seccomp {

uint32_t NativeAuditArch() {
  uint32_t arch = seccomp_arch_native();
  // libseccomp's x32 token is its own; the kernel reports x32 calls as x86_64 (nr | 0x40000000).
  if (arch == SCMP_ARCH_X32) return AUDIT_ARCH_X86_64;
  return arch;
}

std::optional<int> NativeSyscallNumber(const std::string& name) {
  int nr = seccomp_syscall_resolve_name(name.c_str());
  if (nr < 0) return std::nullopt;
  return nr;
}

seccomp_data MakeSeccompData(int nr, std::initializer_list<uint64_t> args, uint32_t arch) {
  seccomp_data d;
  std::memset(&d, 0, sizeof d);
  d.nr = nr;
  d.arch = arch;
  size_t i = 0;
  for (uint64_t a : args) {
    if (i == 6) break;
    d.args[i++] = a;
  }
  return d;
}

Result<uint32_t> Evaluate(const Program& program, const seccomp_data& data) {
  const std::vector<sock_filter>& insns = program.insns;
  if (insns.empty() || insns.size() > BPF_MAXINSNS) {
    return MakeError(ErrorCode::kInvalidArgument, "program has {} instructions; need 1..{}",
                     insns.size(), BPF_MAXINSNS);
  }
  unsigned char bytes[sizeof(seccomp_data)];
  std::memcpy(bytes, &data, sizeof data);
  uint32_t a = 0;
  uint32_t x = 0;
  uint32_t mem[BPF_MEMWORDS] = {};
  size_t pc = 0;
  auto bad = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument, "insn {} (code {:#x}): {}", pc, insns[pc].code,
                     why);
  };
  while (pc < insns.size()) {
    const sock_filter& in = insns[pc];
    const uint32_t k = in.k;
    const uint32_t src = BPF_SRC(in.code) == BPF_X ? x : k;
    switch (BPF_CLASS(in.code)) {
      case BPF_LD:
      case BPF_LDX: {
        uint32_t v;
        if (in.code == (BPF_LD | BPF_W | BPF_ABS)) {
          if (k % 4 != 0 || k + 4 > sizeof bytes) return bad("load outside seccomp_data");
          std::memcpy(&v, bytes + k, 4);
        } else if (BPF_MODE(in.code) == BPF_LEN && BPF_SIZE(in.code) == BPF_W) {
          v = sizeof(seccomp_data);
        } else if (BPF_MODE(in.code) == BPF_IMM) {
          v = k;
        } else if (BPF_MODE(in.code) == BPF_MEM) {
          if (k >= BPF_MEMWORDS) return bad("scratch index out of range");
          v = mem[k];
        } else {
          return bad("load mode seccomp refuses");
        }
        (BPF_CLASS(in.code) == BPF_LD ? a : x) = v;
        break;
      }
      case BPF_ST:
      case BPF_STX:
        if (k >= BPF_MEMWORDS) return bad("scratch index out of range");
        mem[k] = BPF_CLASS(in.code) == BPF_ST ? a : x;
        break;
      case BPF_ALU:
        switch (BPF_OP(in.code)) {
          case BPF_ADD:
            a += src;
            break;
          case BPF_SUB:
            a -= src;
            break;
          case BPF_MUL:
            a *= src;
            break;
          case BPF_DIV:
            if (src == 0) return bad("division by zero");
            a /= src;
            break;
          case BPF_AND:
            a &= src;
            break;
          case BPF_OR:
            a |= src;
            break;
          case BPF_XOR:
            a ^= src;
            break;
          case BPF_LSH:
            a = src >= 32 ? 0 : a << src;
            break;
          case BPF_RSH:
            a = src >= 32 ? 0 : a >> src;
            break;
          case BPF_NEG:
            a = -a;
            break;
          default:
            return bad("ALU op seccomp refuses");
        }
        break;
      case BPF_JMP: {
        size_t next;
        if (BPF_OP(in.code) == BPF_JA) {
          next = pc + 1 + k;
        } else {
          bool taken;
          switch (BPF_OP(in.code)) {
            case BPF_JEQ:
              taken = a == src;
              break;
            case BPF_JGT:
              taken = a > src;
              break;
            case BPF_JGE:
              taken = a >= src;
              break;
            case BPF_JSET:
              taken = (a & src) != 0;
              break;
            default:
              return bad("jump op seccomp refuses");
          }
          next = pc + 1 + (taken ? in.jt : in.jf);
        }
        if (next >= insns.size()) return bad("jump past the end of the program");
        pc = next;
        continue;
      }
      case BPF_RET:
        if (BPF_RVAL(in.code) == BPF_K) return k;
        if (BPF_RVAL(in.code) == BPF_A) return a;
        return bad("return source seccomp refuses");
      case BPF_MISC:
        if (BPF_MISCOP(in.code) == BPF_TAX) {
          x = a;
        } else if (BPF_MISCOP(in.code) == BPF_TXA) {
          a = x;
        } else {
          return bad("misc op seccomp refuses");
        }
        break;
      default:
        return bad("instruction class seccomp refuses");
    }
    ++pc;
  }
  return MakeError(ErrorCode::kInvalidArgument, "program runs off its end without returning");
}

}  // namespace sbx::seccomp
