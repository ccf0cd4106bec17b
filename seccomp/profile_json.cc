// The Docker/OCI seccomp JSON format -> Profile. The only file that touches nlohmann_json: every
// exception it can raise is caught here (ParseProfile never throws).
//
// Format reference: moby profiles/seccomp/default.json and its Go types (profiles/seccomp/
// seccomp.go), runc libcontainer/seccomp. Differences from Docker, all stricter:
//  - unknown fields are errors (a misspelt "excludes" must not silently widen a profile);
//  - "flags", "listenerPath" and "listenerMetadata" are refused unless empty;
//  - errnoRet is refused on actions that ignore it, and must fit the kernel's range.
// The containers/common variant (pkg/seccomp/seccomp.json and types.go, used by Podman, Buildah
// and CRI-O) adds "defaultErrno" and "errno": the errno by name beside the number, which that
// code lets the name override. Here the name must be known, and a name and a number given
// together must agree.
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "seccomp/internal.h"
#include "seccomp/seccomp.h"

namespace sbx::seccomp {
namespace {

using nlohmann::json;

constexpr size_t kMaxProfileBytes = 4 << 20;
// SECCOMP_RET_DATA is 16 bits; an errno above MAX_ERRNO (4095) would read as a valid return value.
constexpr uint64_t kMaxErrno = 4095;
constexpr uint64_t kMaxTraceData = 0xffff;
constexpr unsigned kMaxArgIndex = 5;

std::string Join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}

std::string Index(std::string_view path, size_t i) { return fmt::format("{}[{}]", path, i); }

template <typename... Args>
Error PathError(std::string_view path, fmt::format_string<Args...> f, Args&&... args) {
  return MakeError(ErrorCode::kInvalidArgument, "{}: {}", path.empty() ? "profile" : path,
                   fmt::format(f, std::forward<Args>(args)...));
}

std::string OneOf(std::span<const std::string_view> names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

bool Contains(std::span<const std::string_view> names, std::string_view s) {
  for (std::string_view n : names) {
    if (n == s) return true;
  }
  return false;
}

// nullptr when the key is absent or null: Go's encoding/json, which wrote most profiles in the
// wild, treats both the same.
const json* Field(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Status CheckKeys(const json& obj, std::string_view path,
                 std::initializer_list<std::string_view> allowed) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!Contains(std::span(allowed.begin(), allowed.size()), it.key())) {
      return PathError(Join(path, it.key()), "unknown field; the fields here are {}",
                       OneOf(std::span(allowed.begin(), allowed.size())));
    }
  }
  return Ok();
}

Result<const json*> ObjectField(const json& obj, std::string_view key, std::string_view path) {
  const json* f = Field(obj, key);
  if (f != nullptr && !f->is_object()) {
    return PathError(Join(path, key), "expected an object, got {}", f->type_name());
  }
  return f;
}

Result<std::optional<std::string>> StringField(const json& obj, std::string_view key,
                                               std::string_view path) {
  const json* f = Field(obj, key);
  if (f == nullptr) return std::optional<std::string>();
  if (!f->is_string()) {
    return PathError(Join(path, key), "expected a string, got {}", f->type_name());
  }
  return std::optional<std::string>(f->get_ref<const std::string&>());
}

Result<uint64_t> AsUint(const json& v, std::string_view path, uint64_t max) {
  if (v.is_number_unsigned()) {
    uint64_t n = v.get<uint64_t>();
    if (n > max) return PathError(path, "{} is out of range; the maximum is {}", n, max);
    return n;
  }
  if (v.is_number_integer()) return PathError(path, "must not be negative, got {}", v.dump());
  if (v.is_number_float()) {
    // JSON integers past 2^64-1 arrive here as doubles.
    if (v.get<double>() >= 18446744073709551616.0) {
      return PathError(path, "{:.0f} is out of range; the maximum is {}", v.get<double>(), max);
    }
    return PathError(path, "expected an integer, got {}", v.dump());
  }
  return PathError(path, "expected an unsigned integer, got {}", v.type_name());
}

Result<std::optional<uint64_t>> UintField(const json& obj, std::string_view key,
                                          std::string_view path, uint64_t max) {
  const json* f = Field(obj, key);
  if (f == nullptr) return std::optional<uint64_t>();
  auto v = AsUint(*f, Join(path, key), max);
  if (!v.ok()) return std::move(v).error();
  return std::optional<uint64_t>(*v);
}

Result<std::vector<std::string>> StringArrayField(const json& obj, std::string_view key,
                                                  std::string_view path) {
  std::vector<std::string> out;
  const json* f = Field(obj, key);
  if (f == nullptr) return out;
  std::string p = Join(path, key);
  if (!f->is_array()) return PathError(p, "expected an array of strings, got {}", f->type_name());
  out.reserve(f->size());
  for (size_t i = 0; i < f->size(); ++i) {
    const json& e = (*f)[i];
    if (!e.is_string()) {
      return PathError(Index(p, i), "expected a string, got {}", e.type_name());
    }
    out.push_back(e.get_ref<const std::string&>());
  }
  return out;
}

Result<std::string> Action(const json& obj, std::string_view path) {
  std::string p = Join(path, path.empty() ? "defaultAction" : "action");
  auto s = StringField(obj, path.empty() ? "defaultAction" : "action", path);
  if (!s.ok()) return std::move(s).error();
  if (!s->has_value()) {
    return PathError(p, "missing; set it to one of {}", OneOf(internal::kActions));
  }
  if (!Contains(internal::kActions, **s)) {
    return PathError(p, "unknown action \"{}\"; use one of {}", **s, OneOf(internal::kActions));
  }
  return std::move(**s);
}

Result<std::optional<unsigned>> ErrnoRet(const json& obj, std::string_view key,
                                         std::string_view path, const std::string& action) {
  const json* f = Field(obj, key);
  if (f == nullptr) return std::optional<unsigned>();
  if (!internal::ActionTakesErrnoRet(action)) {
    return PathError(Join(path, key),
                     "{} does not return a value; use {} only with SCMP_ACT_ERRNO or "
                     "SCMP_ACT_TRACE, or remove it",
                     action, key);
  }
  uint64_t max = action == "SCMP_ACT_ERRNO" ? kMaxErrno : kMaxTraceData;
  auto v = AsUint(*f, Join(path, key), max);
  if (!v.ok()) return std::move(v).error();
  return std::optional<unsigned>(static_cast<unsigned>(*v));
}

// The errno of an action from its number (number_key, e.g. "errnoRet") and its name (name_key,
// e.g. "errno"), either or both.
Result<std::optional<unsigned>> ErrnoOf(const json& obj, std::string_view number_key,
                                        std::string_view name_key, std::string_view path,
                                        const std::string& action) {
  auto number = ErrnoRet(obj, number_key, path, action);
  if (!number.ok()) return std::move(number).error();
  auto name = StringField(obj, name_key, path);
  if (!name.ok()) return std::move(name).error();
  if (!name->has_value()) return *number;
  std::string name_path = Join(path, name_key);
  if (!internal::ActionTakesErrnoRet(action)) {
    return PathError(name_path,
                     "{} does not return a value; use {} only with SCMP_ACT_ERRNO or "
                     "SCMP_ACT_TRACE, or remove it",
                     action, name_key);
  }
  std::optional<unsigned> by_name = internal::ErrnoByName(**name);
  if (!by_name) {
    return PathError(name_path,
                     "\"{}\" is not an errno name; write one such as \"EPERM\" or \"ENOSYS\", or "
                     "give the number in {}",
                     **name, number_key);
  }
  if (number->has_value() && **number != *by_name) {
    return PathError(name_path, "\"{}\" is errno {}, but {} is {}; make them agree or remove one",
                     **name, *by_name, Join(path, number_key), **number);
  }
  return by_name;
}

bool IsSyscallName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool IsCapName(std::string_view s) {
  if (s.size() <= 4 || s.substr(0, 4) != "CAP_") return false;
  for (char c : s.substr(4)) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

Result<Filter> ParseFilter(const json& obj, std::string_view key, std::string_view parent) {
  Filter out;
  auto f = ObjectField(obj, key, parent);
  if (!f.ok()) return std::move(f).error();
  if (*f == nullptr) return out;
  const json& o = **f;
  std::string path = Join(parent, key);
  SBX_TRY(CheckKeys(o, path, {"caps", "arches", "minKernel", "comment"}));

  auto caps = StringArrayField(o, "caps", path);
  if (!caps.ok()) return std::move(caps).error();
  for (size_t i = 0; i < caps->size(); ++i) {
    const std::string& c = (*caps)[i];
    if (!IsCapName(c)) {
      return PathError(Index(Join(path, "caps"), i),
                       "\"{}\" is not a capability name; spell it like CAP_SYS_ADMIN", c);
    }
  }
  out.caps = std::move(*caps);

  auto arches = StringArrayField(o, "arches", path);
  if (!arches.ok()) return std::move(arches).error();
  for (size_t i = 0; i < arches->size(); ++i) {
    const std::string& a = (*arches)[i];
    if (!internal::IsKnownArchAlias(a)) {
      return PathError(Index(Join(path, "arches"), i), "unknown architecture \"{}\"; use one of {}",
                       a, internal::ArchAliasList());
    }
  }
  out.arches = std::move(*arches);

  auto min_kernel = StringField(o, "minKernel", path);
  if (!min_kernel.ok()) return std::move(min_kernel).error();
  if (min_kernel->has_value()) {
    if (!internal::ParseMinKernel(**min_kernel)) {
      return PathError(Join(path, "minKernel"),
                       "\"{}\" is not a kernel version; write \"<major>.<minor>\" such as \"5.8\"",
                       **min_kernel);
    }
    out.min_kernel = std::move(**min_kernel);
  }

  auto comment = StringField(o, "comment", path);
  if (!comment.ok()) return std::move(comment).error();
  return out;
}

Result<ArgCmp> ParseArg(const json& a, std::string_view path) {
  if (!a.is_object()) return PathError(path, "expected an object, got {}", a.type_name());
  SBX_TRY(CheckKeys(a, path, {"index", "value", "valueTwo", "op", "comment"}));
  ArgCmp out;

  const json* index = Field(a, "index");
  if (index == nullptr) return PathError(Join(path, "index"), "missing; set 0..5");
  auto i = AsUint(*index, Join(path, "index"), std::numeric_limits<uint64_t>::max());
  if (!i.ok()) return std::move(i).error();
  if (*i > kMaxArgIndex) {
    return PathError(Join(path, "index"),
                     "{} is out of range; syscalls have 6 arguments, indexed 0..5", *i);
  }
  out.index = static_cast<unsigned>(*i);

  const json* value = Field(a, "value");
  if (value == nullptr) return PathError(Join(path, "value"), "missing; set the value to compare");
  auto v = AsUint(*value, Join(path, "value"), std::numeric_limits<uint64_t>::max());
  if (!v.ok()) return std::move(v).error();
  out.value = *v;

  auto v2 = UintField(a, "valueTwo", path, std::numeric_limits<uint64_t>::max());
  if (!v2.ok()) return std::move(v2).error();
  out.value_two = v2->value_or(0);

  auto op = StringField(a, "op", path);
  if (!op.ok()) return std::move(op).error();
  if (!op->has_value()) {
    return PathError(Join(path, "op"), "missing; use one of {}", OneOf(internal::kOps));
  }
  if (!Contains(internal::kOps, **op)) {
    return PathError(Join(path, "op"), "unknown operator \"{}\"; use one of {}", **op,
                     OneOf(internal::kOps));
  }
  out.op = std::move(**op);

  auto comment = StringField(a, "comment", path);
  if (!comment.ok()) return std::move(comment).error();
  return out;
}

Result<SyscallRule> ParseSyscall(const json& s, std::string_view path) {
  if (!s.is_object()) return PathError(path, "expected an object, got {}", s.type_name());
  SBX_TRY(CheckKeys(
      s, path,
      {"names", "name", "action", "errnoRet", "errno", "args", "comment", "includes", "excludes"}));
  SyscallRule out;

  auto names = StringArrayField(s, "names", path);
  if (!names.ok()) return std::move(names).error();
  auto name = StringField(s, "name", path);
  if (!name.ok()) return std::move(name).error();
  if (name->has_value() && !names->empty()) {
    return PathError(path, "both \"name\" and \"names\" are set; move the name into \"names\"");
  }
  std::string names_path = Join(path, "names");
  if (name->has_value()) {
    names_path = Join(path, "name");
    names->push_back(std::move(**name));
  }
  if (names->empty()) {
    return PathError(names_path, "no syscall names; list at least one, e.g. \"names\": [\"read\"]");
  }
  for (size_t i = 0; i < names->size(); ++i) {
    const std::string& n = (*names)[i];
    if (!IsSyscallName(n)) {
      std::string p = name->has_value() ? names_path : Index(names_path, i);
      return PathError(p, "\"{}\" is not a syscall name (lowercase letters, digits and _)", n);
    }
  }
  out.names = std::move(*names);

  auto action = Action(s, path);
  if (!action.ok()) return std::move(action).error();
  out.action = std::move(*action);

  auto errno_ret = ErrnoOf(s, "errnoRet", "errno", path, out.action);
  if (!errno_ret.ok()) return std::move(errno_ret).error();
  out.errno_ret = *errno_ret;

  if (const json* args = Field(s, "args")) {
    std::string p = Join(path, "args");
    if (!args->is_array()) return PathError(p, "expected an array, got {}", args->type_name());
    for (size_t i = 0; i < args->size(); ++i) {
      auto a = ParseArg((*args)[i], Index(p, i));
      if (!a.ok()) return std::move(a).error();
      out.args.push_back(std::move(*a));
    }
  }

  auto includes = ParseFilter(s, "includes", path);
  if (!includes.ok()) return std::move(includes).error();
  out.includes = std::move(*includes);
  auto excludes = ParseFilter(s, "excludes", path);
  if (!excludes.ok()) return std::move(excludes).error();
  out.excludes = std::move(*excludes);

  auto comment = StringField(s, "comment", path);
  if (!comment.ok()) return std::move(comment).error();
  out.comment = comment->value_or("");
  return out;
}

Result<std::string> ScmpArch(const json& v, std::string_view path) {
  if (!v.is_string()) return PathError(path, "expected a string, got {}", v.type_name());
  const std::string& s = v.get_ref<const std::string&>();
  if (internal::FindArchByScmpName(s) == nullptr) {
    return PathError(path, "unknown architecture \"{}\"; use one of {}", s,
                     internal::ScmpArchList());
  }
  return s;
}

Result<std::vector<ArchMapEntry>> ParseArchMap(const json& doc) {
  std::vector<ArchMapEntry> out;
  const json* m = Field(doc, "archMap");
  if (m == nullptr) return out;
  if (!m->is_array()) return PathError("archMap", "expected an array, got {}", m->type_name());
  for (size_t i = 0; i < m->size(); ++i) {
    std::string p = Index("archMap", i);
    const json& e = (*m)[i];
    if (!e.is_object()) return PathError(p, "expected an object, got {}", e.type_name());
    SBX_TRY(CheckKeys(e, p, {"architecture", "subArchitectures", "comment"}));
    ArchMapEntry entry;
    const json* arch = Field(e, "architecture");
    if (arch == nullptr) {
      return PathError(Join(p, "architecture"), "missing; set an SCMP_ARCH_* name");
    }
    auto a = ScmpArch(*arch, Join(p, "architecture"));
    if (!a.ok()) return std::move(a).error();
    entry.architecture = std::move(*a);
    if (const json* subs = Field(e, "subArchitectures")) {
      std::string sp = Join(p, "subArchitectures");
      if (!subs->is_array()) return PathError(sp, "expected an array, got {}", subs->type_name());
      for (size_t j = 0; j < subs->size(); ++j) {
        auto sub = ScmpArch((*subs)[j], Index(sp, j));
        if (!sub.ok()) return std::move(sub).error();
        entry.sub_architectures.push_back(std::move(*sub));
      }
    }
    auto comment = StringField(e, "comment", p);
    if (!comment.ok()) return std::move(comment).error();
    out.push_back(std::move(entry));
  }
  return out;
}

// Fields that Docker understands but sandboxd does not implement. Accepted only when empty, so
// a profile exported with them zeroed still loads.
Status CheckUnsupported(const json& doc) {
  if (const json* f = Field(doc, "flags")) {
    if (!f->is_array() || !f->empty()) {
      return PathError("flags",
                       "seccomp filter flags are not supported by sandboxd; remove \"flags\"");
    }
  }
  for (std::string_view key : {"listenerPath", "listenerMetadata"}) {
    if (const json* f = Field(doc, key)) {
      if (!f->is_string() || !f->get_ref<const std::string&>().empty()) {
        return PathError(key,
                         "seccomp notification listeners are not supported by sandboxd; "
                         "remove \"{}\"",
                         key);
      }
    }
  }
  return Ok();
}

// With rule_errors set, a rule that fails to parse is recorded there and left out instead of
// failing the document, so that a validator can report every broken rule at once.
Result<Profile> ParseDocument(const json& doc, std::string name,
                              std::vector<Error>* rule_errors = nullptr) {
  if (!doc.is_object()) {
    return PathError("", "expected a JSON object at the top level, got {}", doc.type_name());
  }
  SBX_TRY(CheckKeys(doc, "",
                    {"defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap",
                     "syscalls", "flags", "listenerPath", "listenerMetadata", "comment"}));
  SBX_TRY(CheckUnsupported(doc));
  Profile out;
  out.name = std::move(name);

  auto action = Action(doc, "");
  if (!action.ok()) return std::move(action).error();
  out.default_action = std::move(*action);
  auto errno_ret = ErrnoOf(doc, "defaultErrnoRet", "defaultErrno", "", out.default_action);
  if (!errno_ret.ok()) return std::move(errno_ret).error();
  out.default_errno_ret = *errno_ret;

  if (const json* arches = Field(doc, "architectures")) {
    if (!arches->is_array()) {
      return PathError("architectures", "expected an array, got {}", arches->type_name());
    }
    for (size_t i = 0; i < arches->size(); ++i) {
      auto a = ScmpArch((*arches)[i], Index("architectures", i));
      if (!a.ok()) return std::move(a).error();
      out.architectures.push_back(std::move(*a));
    }
  }
  auto arch_map = ParseArchMap(doc);
  if (!arch_map.ok()) return std::move(arch_map).error();
  out.arch_map = std::move(*arch_map);
  if (!out.architectures.empty() && !out.arch_map.empty()) {
    return PathError("architectures",
                     "both \"architectures\" and \"archMap\" are set; use only one of them");
  }

  if (const json* syscalls = Field(doc, "syscalls")) {
    if (!syscalls->is_array()) {
      return PathError("syscalls", "expected an array, got {}", syscalls->type_name());
    }
    out.syscalls.reserve(syscalls->size());
    for (size_t i = 0; i < syscalls->size(); ++i) {
      auto rule = ParseSyscall((*syscalls)[i], Index("syscalls", i));
      if (!rule.ok() && rule_errors != nullptr) {
        rule_errors->push_back(std::move(rule).error());
        continue;
      }
      if (!rule.ok()) return std::move(rule).error();
      out.syscalls.push_back(std::move(*rule));
    }
  }

  auto comment = StringField(doc, "comment", "");
  if (!comment.ok()) return std::move(comment).error();
  return out;
}

// "[json.exception.parse_error.101] parse error at line 1, column 2: …" -> "parse error at …".
std::string StripExceptionId(std::string_view what) {
  if (!what.empty() && what.front() == '[') {
    size_t end = what.find("] ");
    if (end != std::string_view::npos) what.remove_prefix(end + 2);
  }
  return std::string(what);
}

}  // namespace

Result<Profile> ParseProfile(std::string_view text, std::string name) {
  return internal::ParseProfileCollecting(text, std::move(name), nullptr);
}

Result<Profile> internal::ParseProfileCollecting(std::string_view text, std::string name,
                                                 std::vector<Error>* rule_errors) {
  if (text.size() > kMaxProfileBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "seccomp profile {} is {} bytes; the limit is 4 MiB, remove rules", name,
                     text.size());
  }
  try {
    json doc = json::parse(text);
    auto profile = ParseDocument(doc, name, rule_errors);
    if (!profile.ok()) return WithContext(std::move(profile).error(), "seccomp profile " + name);
    return profile;
  } catch (const json::exception& e) {
    return WithContext(
        MakeError(ErrorCode::kInvalidArgument, "invalid JSON: {}", StripExceptionId(e.what())),
        "seccomp profile " + name);
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "parsing seccomp profile {}: {}", name, e.what());
  } catch (...) {
    return MakeError(ErrorCode::kInternal, "parsing seccomp profile {} failed", name);
  }
}

Result<Profile> LoadProfileFile(const std::string& path) {
  auto text = ReadFile(path, kMaxProfileBytes);
  if (!text.ok()) return WithContext(std::move(text).error(), "seccomp profile");
  std::string name;
  try {
    name = std::filesystem::path(path).stem().string();
  } catch (...) {
    name = path;
  }
  if (name.empty()) name = path;
  return ParseProfile(*text, std::move(name));
}

}  // namespace sbx::seccomp
