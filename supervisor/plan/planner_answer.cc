// ParsePlannerAnswer: the one place that parses an external planner's JSON. nlohmann's
// exceptions are caught here; the answer is checked for size, UTF-8 and nesting depth before
// the parser sees it, and for duplicate keys while it parses (two parsers that pick different
// copies of a key would disagree about what is run).
#include <fmt/format.h>

#include <exception>
#include <nlohmann/json.hpp>
#include <set>

#include "supervisor/plan/planner.h"
#include "supervisor/plan/text.h"

namespace sbx::supervisor::plan {
namespace {

using nlohmann::json;

// The answer's shape nests 4 deep ({"steps": [{"argv": [...]}]}); anything much deeper is
// refused before parsing.
constexpr int kMaxDepth = 8;

Error Invalid(std::string message) {
  return Error{ErrorCode::kInvalidArgument, 0, std::move(message), {}};
}

// A string from the answer, quoted for a message.
std::string Q(std::string_view s) {
  std::string_view cut = internal::TruncateUtf8(s, 80);
  return fmt::format("\"{}{}\"", cut, cut.size() < s.size() ? "…" : "");
}

// The deepest nesting of [ and { outside strings.
int NestingDepth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// Where the parser is, as a path ("steps[1].argv"), and the keys seen in each open object.
class KeyTracker {
 public:
  bool OnEvent(json::parse_event_t event, const json& parsed) {
    using E = json::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start:
        frames_.push_back({event == E::array_start, 0, {}, {}});
        break;
      case E::key: {
        Frame& f = frames_.back();
        f.key = parsed.is_string() ? parsed.get<std::string>() : std::string();
        if (!f.keys.insert(f.key).second && duplicate_.empty()) {
          duplicate_ = fmt::format("{}: the key {} appears twice", Path(), Q(f.key));
        }
        break;
      }
      case E::object_end:
      case E::array_end:
        if (!frames_.empty()) frames_.pop_back();
        ElementDone();
        break;
      case E::value:
        ElementDone();
        break;
    }
    return true;
  }

  const std::string& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool array;
    size_t index;
    std::string key;
    std::set<std::string> keys;
  };

  void ElementDone() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
  }

  // "steps[1]" for the object being parsed at frames_.back(); "answer" for the top.
  std::string Path() const {
    std::string path;
    for (size_t i = 0; i + 1 < frames_.size(); ++i) {
      const Frame& f = frames_[i];
      if (f.array) {
        path += fmt::format("[{}]", f.index);
      } else {
        path += fmt::format("{}{}", path.empty() ? "" : ".", internal::TruncateUtf8(f.key, 64));
      }
    }
    return path.empty() ? "answer" : path;
  }

  std::vector<Frame> frames_;
  std::string duplicate_;
};

bool IsStepName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(name[0])) return false;
  for (char c : name.substr(1)) {
    if (!lower_or_digit(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

Result<PlannedStep> ParseStep(const json& j, size_t i) {
  std::string at = fmt::format("steps[{}]", i);
  if (!j.is_object()) return Invalid(fmt::format("{}: not an object", at));
  for (const auto& [key, value] : j.items()) {
    if (key != "name" && key != "argv" && key != "why") {
      return Invalid(
          fmt::format("{}.{}: unknown field; a step has only \"name\", \"argv\" and "
                      "\"why\"",
                      at, internal::TruncateUtf8(key, 64)));
    }
  }
  PlannedStep step;
  auto name = j.find("name");
  if (name == j.end()) return Invalid(fmt::format("{}.name: missing", at));
  if (!name->is_string()) return Invalid(fmt::format("{}.name: not a string", at));
  step.name = name->get<std::string>();
  if (!IsStepName(step.name)) {
    return Invalid(
        fmt::format("{}.name: {} does not match [a-z0-9][a-z0-9_.-]{{0,63}}", at, Q(step.name)));
  }
  auto argv = j.find("argv");
  if (argv == j.end()) return Invalid(fmt::format("{}.argv: missing", at));
  if (!argv->is_array()) return Invalid(fmt::format("{}.argv: not an array of strings", at));
  if (argv->empty() || argv->size() > kMaxArgvEntries) {
    return Invalid(
        fmt::format("{}.argv: {} entries; 1 to {} are allowed", at, argv->size(), kMaxArgvEntries));
  }
  for (size_t k = 0; k < argv->size(); ++k) {
    const json& a = (*argv)[k];
    std::string where = fmt::format("{}.argv[{}]", at, k);
    if (!a.is_string()) return Invalid(fmt::format("{}: not a string", where));
    const std::string& s = a.get_ref<const std::string&>();
    if (s.empty()) return Invalid(fmt::format("{}: empty", where));
    if (s.size() > kMaxArgBytes) {
      return Invalid(fmt::format("{}: {} bytes, more than {}", where, s.size(), kMaxArgBytes));
    }
    if (s.find('\0') != std::string::npos) return Invalid(fmt::format("{}: contains NUL", where));
    if (!internal::IsValidUtf8(s)) return Invalid(fmt::format("{}: not valid UTF-8", where));
    step.argv.push_back(s);
  }
  if (auto why = j.find("why"); why != j.end()) {
    if (!why->is_string()) return Invalid(fmt::format("{}.why: not a string", at));
    step.why = why->get<std::string>();
    if (step.why.size() > kMaxWhyBytes) {
      return Invalid(
          fmt::format("{}.why: {} bytes, more than {}", at, step.why.size(), kMaxWhyBytes));
    }
  }
  return step;
}

}  // namespace

Result<std::vector<PlannedStep>> ParsePlannerAnswer(std::string_view text) {
  if (text.size() > kMaxAnswerBytes) {
    return Invalid(fmt::format("answer: {} bytes, more than {}", text.size(), kMaxAnswerBytes));
  }
  if (!internal::IsValidUtf8(text)) return Invalid("answer: not valid UTF-8");
  if (NestingDepth(text) > kMaxDepth) {
    return Invalid(fmt::format("answer: nested deeper than {} levels", kMaxDepth));
  }
  KeyTracker keys;
  json j;
  try {
    j = json::parse(
        text,
        [&keys](int, json::parse_event_t event, json& parsed) {
          return keys.OnEvent(event, parsed);
        },
        /*allow_exceptions=*/true);
  } catch (const json::parse_error& e) {
    return Invalid(fmt::format("answer: not valid JSON (at byte {})", e.byte));
  } catch (const std::exception& e) {
    return Invalid("answer: not valid JSON");
  }
  if (!keys.duplicate().empty()) return Invalid(keys.duplicate());
  if (!j.is_object()) {
    return Invalid("answer: not a JSON object; expected {\"steps\": [...]}");
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "steps") {
      return Invalid(fmt::format("answer.{}: unknown field; only \"steps\" is allowed",
                                 internal::TruncateUtf8(key, 64)));
    }
  }
  auto steps = j.find("steps");
  if (steps == j.end()) return Invalid("steps: missing");
  if (!steps->is_array()) return Invalid("steps: not an array");
  if (steps->empty() || steps->size() > kMaxAnswerSteps) {
    return Invalid(
        fmt::format("steps: {} steps; 1 to {} are allowed", steps->size(), kMaxAnswerSteps));
  }
  std::vector<PlannedStep> out;
  for (size_t i = 0; i < steps->size(); ++i) {
    auto step = ParseStep((*steps)[i], i);
    if (!step.ok()) return std::move(step).error();
    for (size_t k = 0; k < out.size(); ++k) {
      if (out[k].name == step->name) {
        return Invalid(fmt::format("steps[{}].name: {} is already the name of steps[{}]", i,
                                   Q(step->name), k));
      }
    }
    out.push_back(std::move(*step));
  }
  return out;
}

}  // namespace sbx::supervisor::plan
