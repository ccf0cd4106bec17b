// What the policy library's YAML files (commands.yaml, jobs.yaml) share: errors that name the
// file and line, key checks, scalar parsers, and loading exactly one document. Internal to the
// policy library; the only files that include yaml-cpp are this one's users.
#include "supervisor/policy/yaml_util.h"

#include <yaml-cpp/eventhandler.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace sbx::policy::internal {

int LineOf(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return m.line >= 0 ? m.line + 1 : 0;
}

Error At(const std::string& source, int line, const std::string& what) {
  Error e = line > 0 ? MakeError(ErrorCode::kInvalidArgument, "{}:{}: {}", source, line, what)
                     : MakeError(ErrorCode::kInvalidArgument, "{}: {}", source, what);
  e.context = source;
  return e;
}

Error At(const std::string& source, const YAML::Node& n, const std::string& what) {
  return At(source, LineOf(n), what);
}

std::string Join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

// `where` reads "at the top level" or "in rule set 'ci'".
Status CheckKeys(const YAML::Node& map, const std::set<std::string>& known,
                 const std::string& source, const std::string& where) {
  for (const auto& kv : map) {
    if (!kv.first.IsScalar())
      return At(source, kv.first, fmt::format("keys must be plain names {}", where));
    const std::string key = kv.first.Scalar();
    if (!known.count(key)) {
      return At(source, kv.first,
                fmt::format("unknown key '{}' {} (known: {}); check the spelling", key, where,
                            Join(known)));
    }
  }
  return Ok();
}

// A whole number of at most 18 digits, so no sum or product of two overflows; no sign.
std::optional<int64_t> ParseDigits(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// `name` reads "allow_within.pids" (with the set's name in `where`).
Result<int64_t> ParsePositiveInt(const YAML::Node& n, const std::string& source,
                                 const std::string& name, const std::string& where,
                                 std::string_view example) {
  std::optional<int64_t> v;
  if (n.IsScalar()) v = ParseDigits(n.Scalar());
  if (!v || *v == 0) {
    return At(
        source, n,
        fmt::format("'{}' {} must be a positive whole number, such as {}", name, where, example));
  }
  return *v;
}

// Bytes, or a number with a KiB, MiB or GiB suffix: 536870912, 512MiB, 1GiB.
Result<int64_t> ParseSize(const YAML::Node& n, const std::string& source, const std::string& name,
                          const std::string& where) {
  std::optional<int64_t> bytes;
  if (n.IsScalar()) {
    std::string_view s = n.Scalar();
    int shift = 0;
    if (s.ends_with("KiB")) shift = 10;
    if (s.ends_with("MiB")) shift = 20;
    if (s.ends_with("GiB")) shift = 30;
    if (shift > 0) s.remove_suffix(3);
    std::optional<int64_t> v = ParseDigits(s);
    // 18 digits shifted by 30 could overflow: at most 2^62 bytes.
    if (v && *v <= (int64_t{1} << (62 - shift))) bytes = *v << shift;
  }
  if (!bytes || *bytes == 0) {
    return At(source, n,
              fmt::format("'{}' {} must be a positive size in bytes, or with a KiB, MiB or GiB "
                          "suffix, such as 512MiB or 1GiB",
                          name, where));
  }
  return *bytes;
}

Result<double> ParseCpus(const YAML::Node& n, const std::string& source, const std::string& name,
                         const std::string& where) {
  if (n.IsScalar() && !n.Scalar().empty()) {
    const std::string& s = n.Scalar();
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    // strtod also reads "inf", "nan" and hex floats; a count of CPUs is written in decimal.
    const bool decimal = s.find_first_not_of("0123456789.") == std::string::npos;
    if (decimal && errno == 0 && end == s.c_str() + s.size() && v > 0 && v <= 1e6) return v;
  }
  return At(
      source, n,
      fmt::format("'{}' {} must be a positive number of CPUs, such as 1 or 0.5", name, where));
}

namespace {

// Counts the YAML documents of `text`, stopping at `max`, without building them; the mark of
// the last one started. yaml-cpp 0.7's LoadAll never returns on a stray top-level ',' (found by
// fuzzing: the parser hands out one empty document after another), so documents are counted
// with a cap first and the one document is then built by YAML::Load.
class DocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    ++count;
    last = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
  size_t count = 0;
  YAML::Mark last;
};

size_t CountDocuments(const std::string& text, size_t max, YAML::Mark* last) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  while (counter.count < max && parser.HandleNextDocument(counter)) {
  }
  *last = counter.last;
  return counter.count;
}

}  // namespace

Result<YAML::Node> LoadOneDocument(std::string_view text, const std::string& source,
                                   std::string_view what) {
  try {
    const std::string yaml(text);
    YAML::Mark second;
    if (CountDocuments(yaml, 2, &second) > 1) {
      return At(source, second.line >= 0 ? second.line + 1 : 0,
                fmt::format("holds more than one YAML document ('---', or a stray top-level "
                            "','); {} holds one",
                            what));
    }
    return YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    // An unquoted "*" key reads as an alias to an anchor that does not exist.
    const bool alias =
        e.msg.find("anchor") != std::string::npos || e.msg.find("alias") != std::string::npos;
    return At(source, e.mark.line >= 0 ? e.mark.line + 1 : 0,
              fmt::format("not valid YAML: {} (column {}){}", e.msg, e.mark.column + 1,
                          alias ? "; a pattern starting with * must be quoted: \"*\": review"
                                : "; fix the syntax at that place"));
  } catch (const std::exception& e) {
    return At(source, 0, fmt::format("cannot be read as YAML: {}", e.what()));
  }
}

}  // namespace sbx::policy::internal
