#include "supervisor/plan/project_files.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <exception>
#include <nlohmann/json.hpp>

#include "supervisor/plan/text.h"

namespace sbx::supervisor::plan::internal {
namespace {

using nlohmann::json;

constexpr size_t kMaxScripts = 256;
constexpr size_t kMaxToolSections = 64;
constexpr size_t kMaxTargets = 256;
// Longer script names, table and section names are not recorded.
constexpr size_t kMaxNameBytes = 128;

// The Python tools the planner knows, as package names.
constexpr std::array<std::string_view, 5> kPythonTools = {"pytest", "tox", "ruff", "flake8",
                                                          "mypy"};

std::string_view Trim(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  size_t e = s.size();
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Calls f(line, number) for each line of `text` (without its '\n'), numbered from 1.
template <typename F>
void ForEachLine(std::string_view text, F&& f) {
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    ++line_no;
    if (!f(line, line_no)) return;
    if (nl == std::string_view::npos) return;
    text.remove_prefix(nl + 1);
  }
}

// Records `tool` with `evidence` unless an earlier evidence is known.
void AddTool(PythonProject* python, std::string_view tool, std::string evidence) {
  python->tools.emplace(std::string(tool), std::move(evidence));
}

void AddRequirement(std::string_view requirement, std::string_view where, PythonProject* python) {
  std::string name = RequirementName(requirement);
  for (std::string_view tool : kPythonTools) {
    if (name == tool) AddTool(python, tool, std::string(where));
  }
}

// ---- pyproject.toml ----

// One line of TOML seen by the scanner, outside multi-line strings.
struct TomlLine {
  std::string code;                  // without its comment, trimmed
  std::vector<std::string> strings;  // the quoted strings in it, in order, escapes left as is
  int depth_change = 0;              // [ and { minus ] and } outside strings
  std::string open_multiline;        // "\"\"\"" or "'''" when a multi-line string starts unclosed
  std::string error;                 // an unterminated single-line string
};

TomlLine ScanTomlLine(std::string_view line) {
  TomlLine out;
  size_t i = 0;
  size_t code_end = line.size();
  while (i < line.size()) {
    char c = line[i];
    if (c == '#') {
      code_end = i;
      break;
    }
    if (c == '"' || c == '\'') {
      std::string triple(3, c);
      if (line.substr(i, 3) == triple) {
        size_t close = line.find(triple, i + 3);
        if (close == std::string_view::npos) {
          out.open_multiline = triple;
          code_end = line.size();
          break;
        }
        out.strings.emplace_back(line.substr(i + 3, close - i - 3));
        i = close + 3;
        continue;
      }
      size_t j = i + 1;
      while (j < line.size() && line[j] != c) {
        if (c == '"' && line[j] == '\\') ++j;
        ++j;
      }
      if (j >= line.size()) {
        out.error = "unterminated string";
        code_end = line.size();
        break;
      }
      out.strings.emplace_back(line.substr(i + 1, j - i - 1));
      i = j + 1;
      continue;
    }
    if (c == '[' || c == '{') ++out.depth_change;
    if (c == ']' || c == '}') --out.depth_change;
    ++i;
  }
  out.code = std::string(Trim(line.substr(0, code_end)));
  return out;
}

// "tool . \"pytest.ini_options\"" -> "tool.pytest.ini_options" (spaces and quotes dropped).
std::string NormalizeTableName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != ' ' && c != '\t' && c != '"' && c != '\'') out += c;
  }
  return out;
}

// Whether requirements are listed in `table` under `key` (key empty: the table's own keys are
// package names, as in Poetry's tables).
enum class DepsShape { kNone, kArrayValues, kKeys };

DepsShape DependencyShape(const std::string& table, std::string_view key) {
  if (table == "project") {
    return key == "dependencies" ? DepsShape::kArrayValues : DepsShape::kNone;
  }
  if (table == "project.optional-dependencies" || table == "dependency-groups") {
    return DepsShape::kArrayValues;
  }
  if (table == "tool.poetry.dependencies" || table == "tool.poetry.dev-dependencies" ||
      (table.starts_with("tool.poetry.group.") && table.ends_with(".dependencies"))) {
    return DepsShape::kKeys;
  }
  return DepsShape::kNone;
}

void RecordPyprojectTable(const std::string& table, PythonProject* python) {
  if (!table.starts_with("tool.")) return;
  std::string rest = table.substr(5);
  std::string tool = rest.substr(0, rest.find('.'));
  if (tool.empty()) return;
  auto& sections = python->tool_sections;
  if (std::find(sections.begin(), sections.end(), tool) == sections.end() &&
      sections.size() < kMaxToolSections) {
    sections.insert(std::upper_bound(sections.begin(), sections.end(), tool), tool);
  }
  std::string evidence = fmt::format("pyproject.toml [{}]", table);
  if (table == "tool.pytest.ini_options") AddTool(python, "pytest", evidence);
  if (tool == "mypy") AddTool(python, "mypy", evidence);
  if (tool == "ruff") AddTool(python, "ruff", evidence);
  if (tool == "tox") AddTool(python, "tox", evidence);
  if (tool == "flake8") AddTool(python, "flake8", evidence);
}

}  // namespace

std::string RequirementName(std::string_view requirement) {
  std::string_view r = Trim(requirement);
  size_t n = 0;
  while (n < r.size() && (std::isalnum(static_cast<unsigned char>(r[n])) || r[n] == '.' ||
                          r[n] == '_' || r[n] == '-')) {
    ++n;
  }
  std::string name = Lower(r.substr(0, n));
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

void ReadPackageJson(std::string_view text, NodeProject* node, std::string* package_manager,
                     std::vector<std::string>* notes) {
  json j;
  try {
    j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    j = json::value_t::discarded;
  }
  if (j.is_discarded()) {
    notes->push_back("package.json: not valid JSON; its scripts and dependencies are unknown");
    return;
  }
  if (!j.is_object()) {
    notes->push_back("package.json: not a JSON object; its scripts and dependencies are unknown");
    return;
  }
  node->parsed = true;
  if (auto it = j.find("scripts"); it != j.end()) {
    if (!it->is_object()) {
      notes->push_back("package.json: \"scripts\" is not an object; ignored");
    } else {
      size_t seen = 0;
      for (auto& [name, value] : it->items()) {
        if (++seen > kMaxScripts) {
          notes->push_back(
              fmt::format("package.json: more than {} scripts; the rest ignored", kMaxScripts));
          break;
        }
        if (name.size() > kMaxNameBytes) {
          notes->push_back(
              fmt::format("package.json: a script name over {} bytes; ignored", kMaxNameBytes));
          continue;
        }
        if (!value.is_string()) {
          notes->push_back(
              fmt::format("package.json: script \"{}\" is not a string; ignored", name));
          continue;
        }
        node->scripts.push_back(name);
        if (name == "test" &&
            value.get_ref<const std::string&>().find("no test specified") != std::string::npos) {
          node->test_script_placeholder = true;
        }
      }
      std::sort(node->scripts.begin(), node->scripts.end());
    }
  }
  for (const char* deps : {"devDependencies", "dependencies"}) {
    auto it = j.find(deps);
    if (it != j.end() && it->is_object() && it->contains("typescript")) node->typescript = true;
  }
  if (auto it = j.find("packageManager"); it != j.end() && it->is_string()) {
    const std::string& pm = it->get_ref<const std::string&>();
    std::string name = pm.substr(0, pm.find('@'));
    if (name == "npm" || name == "pnpm" || name == "yarn") *package_manager = name;
  }
}

void ReadPyproject(std::string_view text, PythonProject* python, std::vector<std::string>* notes) {
  std::string table;
  std::string multiline;  // the closing delimiter while inside a multi-line string
  int depth = 0;
  DepsShape array_deps = DepsShape::kNone;  // inside a multi-line array of requirements
  std::string error;
  size_t error_line = 0;
  ForEachLine(text, [&](std::string_view raw, size_t line_no) {
    std::string_view line = raw;
    if (!multiline.empty()) {
      size_t close = line.find(multiline);
      if (close == std::string_view::npos) return true;
      line.remove_prefix(close + 3);
      multiline.clear();
    }
    TomlLine t = ScanTomlLine(line);
    if (!t.error.empty()) {
      error = t.error;
      error_line = line_no;
      return false;
    }
    if (depth == 0 && !t.code.empty() && t.code[0] == '[') {
      bool array_table = t.code.starts_with("[[");
      std::string_view close = array_table ? "]]" : "]";
      if (!std::string_view(t.code).ends_with(close) || t.code.size() < 2 * close.size()) {
        error = "a table header without its closing bracket";
        error_line = line_no;
        return false;
      }
      table = NormalizeTableName(
          std::string_view(t.code).substr(close.size(), t.code.size() - 2 * close.size()));
      if (table.empty()) {
        error = "an empty table header";
        error_line = line_no;
        return false;
      }
      if (table.size() > kMaxNameBytes) {
        error = fmt::format("a table name over {} bytes", kMaxNameBytes);
        error_line = line_no;
        return false;
      }
      RecordPyprojectTable(table, python);
      return true;
    }
    if (depth == 0 && !t.code.empty()) {
      size_t eq = t.code.find('=');
      if (eq == std::string::npos) {
        error = "neither a table header nor a key = value line";
        error_line = line_no;
        return false;
      }
      std::string key = NormalizeTableName(std::string_view(t.code).substr(0, eq));
      DepsShape shape = DependencyShape(table, key);
      std::string where = fmt::format("pyproject.toml [{}]", table);
      if (shape == DepsShape::kKeys) {
        AddRequirement(key, where, python);
      } else if (shape == DepsShape::kArrayValues) {
        for (const std::string& s : t.strings) AddRequirement(s, where, python);
        if (t.depth_change > 0) array_deps = shape;
      }
    } else if (depth > 0 && array_deps == DepsShape::kArrayValues) {
      for (const std::string& s : t.strings) {
        AddRequirement(s, fmt::format("pyproject.toml [{}]", table), python);
      }
    }
    depth += t.depth_change;
    if (depth < 0) {
      error = "a closing bracket without its opening one";
      error_line = line_no;
      return false;
    }
    if (depth == 0) array_deps = DepsShape::kNone;
    multiline = t.open_multiline;
    return true;
  });
  if (error.empty() && (depth != 0 || !multiline.empty())) {
    error = depth != 0 ? "an array or inline table left open" : "a multi-line string left open";
    error_line = 0;
  }
  if (!error.empty()) {
    notes->push_back(
        error_line > 0
            ? fmt::format("pyproject.toml line {}: not valid TOML ({}); read up to there",
                          error_line, error)
            : fmt::format("pyproject.toml: not valid TOML ({}) at the end of the file", error));
  }
}

void ReadIniFile(std::string_view file_name, std::string_view text, PythonProject* python) {
  if (file_name == "pytest.ini") AddTool(python, "pytest", "pytest.ini");
  ForEachLine(text, [&](std::string_view raw, size_t) {
    std::string_view line = Trim(raw);
    if (line.size() < 3 || line.front() != '[' || line.back() != ']') return true;
    std::string section = Lower(Trim(line.substr(1, line.size() - 2)));
    if (section.size() > kMaxNameBytes) return true;
    std::string evidence = fmt::format("{} [{}]", file_name, section);
    if (section == "tool:pytest" || (section == "pytest" && file_name != "setup.cfg")) {
      AddTool(python, "pytest", evidence);
    }
    if (section == "mypy" || section.starts_with("mypy-")) AddTool(python, "mypy", evidence);
    if (section == "flake8") AddTool(python, "flake8", evidence);
    if (file_name == "tox.ini" && (section == "tox" || section.starts_with("testenv"))) {
      AddTool(python, "tox", evidence);
    }
    return true;
  });
}

void ReadRequirements(std::string_view file_name, std::string_view text, PythonProject* python) {
  ForEachLine(text, [&](std::string_view raw, size_t) {
    std::string_view line = Trim(raw.substr(0, raw.find('#')));
    if (line.empty() || line.front() == '-') return true;
    AddRequirement(line, std::string(file_name), python);
    return true;
  });
}

void ReadCMakeLists(std::string_view text, CMakeProject* cmake) {
  // Comments and quoted strings out, everything lowercased, blanks removed.
  std::string code;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      continue;
    }
    if (c == '#') {
      // A bracket comment #[[ ... ]] may span lines; a line comment ends at the newline.
      if (text.substr(i, 3) == "#[[") {
        size_t close = text.find("]]", i + 3);
        i = close == std::string_view::npos ? text.size() : close + 1;
      } else {
        size_t nl = text.find('\n', i);
        i = nl == std::string_view::npos ? text.size() : nl;
        code += '\n';
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') continue;
    code += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  // A command starts a line or follows ')' (commands are separated by either).
  auto has_command = [&](std::string_view call) {
    for (size_t pos = code.find(call); pos != std::string::npos; pos = code.find(call, pos + 1)) {
      if (pos == 0 || code[pos - 1] == '\n' || code[pos - 1] == ')') return true;
    }
    return false;
  };
  cmake->testing_enabled = has_command("enable_testing(") || has_command("include(ctest)") ||
                           has_command("include(ctest");
  cmake->add_test_seen = has_command("add_test(");
}

bool IsPlainTarget(std::string_view target) {
  if (target.empty()) return false;
  if (!std::isalnum(static_cast<unsigned char>(target[0])) && target[0] != '_') return false;
  return std::all_of(target.begin(), target.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == '/' || c == '+';
  });
}

void ReadMakefile(std::string_view text, MakeProject* make) {
  bool continued = false;
  bool in_define = false;
  bool default_seen = false;  // the first rule (or .DEFAULT_GOAL) was seen
  ForEachLine(text, [&](std::string_view raw, size_t) {
    std::string_view line = raw;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    bool was_continued = continued;
    continued = !line.empty() && line.back() == '\\';
    if (was_continued) return true;
    if (line.empty() || line.front() == '\t') return true;
    std::string_view code = Trim(line.substr(0, line.find('#')));
    if (in_define) {
      if (code == "endef") in_define = false;
      return true;
    }
    if (code.starts_with("define ") || code == "define" || code.starts_with("override define ")) {
      in_define = true;
      return true;
    }
    // .DEFAULT_GOAL = x (or :=, ::=, ?=, +=): the default goal, whatever the first rule says.
    if (code.starts_with(".DEFAULT_GOAL")) {
      size_t eq = code.find('=');
      std::string_view op = Trim(code.substr(13, eq == std::string_view::npos ? 0 : eq - 13));
      if (eq != std::string_view::npos && (op.empty() || op == ":" || op == "::" || op == "?")) {
        std::string_view value = Trim(code.substr(eq + 1));
        make->default_goal = IsPlainTarget(value) ? std::string(value) : std::string();
        default_seen = true;
      }
      return true;
    }
    size_t colon = code.find(':');
    if (colon == std::string_view::npos) return true;
    std::string_view before = code.substr(0, colon);
    std::string_view after = code.substr(colon + 1);
    // Assignments: VAR = x, VAR := x, VAR ::= x, VAR ?= x (an '=' before the colon, or ":=").
    if (before.find('=') != std::string_view::npos || after.starts_with("=") ||
        after.starts_with(":=")) {
      return true;
    }
    if (after.starts_with(":")) after.remove_prefix(1);  // a double-colon rule
    // A target-specific variable: "test: CFLAGS += -g".
    std::string_view rest = Trim(after);
    size_t eq = rest.find('=');
    if (eq != std::string_view::npos) {
      std::string_view lhs = Trim(rest.substr(0, eq));
      if (!lhs.empty() &&
          (lhs.back() == '+' || lhs.back() == '?' || lhs.back() == ':' || lhs.back() == '!')) {
        lhs.remove_suffix(1);
      }
      lhs = Trim(lhs);
      bool one_word = !lhs.empty() && lhs.find_first_of(" \t") == std::string_view::npos;
      if (one_word) return true;
    }
    // The targets before the colon, one by one.
    size_t i = 0;
    while (i < before.size()) {
      while (i < before.size() && (before[i] == ' ' || before[i] == '\t')) ++i;
      size_t j = i;
      while (j < before.size() && before[j] != ' ' && before[j] != '\t') ++j;
      std::string_view target = before.substr(i, j - i);
      i = j;
      if (target.empty()) continue;
      bool plain = IsPlainTarget(target);
      // Targets starting with '.' (.PHONY, .SUFFIXES) are never the default goal.
      if (!default_seen && target[0] != '.') {
        default_seen = true;
        if (plain) make->default_goal = std::string(target);
      }
      if (!plain) continue;
      if (std::find(make->targets.begin(), make->targets.end(), target) != make->targets.end()) {
        continue;
      }
      if (make->targets.size() >= kMaxTargets) return false;
      make->targets.emplace_back(target);
    }
    return true;
  });
}

void ReadCargoToml(std::string_view text, CargoProject* cargo) {
  ForEachLine(text, [&](std::string_view raw, size_t) {
    std::string_view line = Trim(raw.substr(0, raw.find('#')));
    if (line.starts_with("[workspace")) {
      std::string name = NormalizeTableName(line.substr(1, line.find(']') - 1));
      if (name == "workspace" || name.starts_with("workspace.")) cargo->workspace = true;
    }
    return true;
  });
}

void ReadGoMod(std::string_view text, GoProject* go) {
  ForEachLine(text, [&](std::string_view raw, size_t) {
    std::string_view line = Trim(raw.substr(0, raw.find("//")));
    if (!line.starts_with("module ") && !line.starts_with("module\t")) return true;
    std::string_view path = Trim(line.substr(7));
    if (path.size() >= 2 && (path.front() == '"' || path.front() == '`') &&
        path.back() == path.front()) {
      path = path.substr(1, path.size() - 2);
    }
    // Module paths are printable ASCII; anything else is not recorded.
    bool printable = path.size() <= 256 && std::all_of(path.begin(), path.end(),
                                                       [](char c) { return c > 0x20 && c < 0x7f; });
    if (printable) go->module = std::string(path);
    return false;
  });
}

}  // namespace sbx::supervisor::plan::internal
