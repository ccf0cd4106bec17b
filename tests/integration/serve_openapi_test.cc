// api/v1/openapi.yaml against the routes `sandboxd serve` registers: the same (method, path) pairs
// both ways, the same roles, WebSocket routes marked as such; the document itself is well formed
// (every operation answers something and names its role, every $ref resolves, every path
// parameter is declared) and is served as JSON without a key.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "api/http/server.h"
#include "api/testing/raw_client.h"
#include "api/v1/metrics_routes.h"
#include "api/v1/openapi_routes.h"
#include "api/v1/run_routes.h"
#include "api/v1/sandbox_routes.h"

namespace sbx::api {
namespace {

using testing::MakeRequest;
using testing::RawConn;
using testing::RoundTrip;

using Json = nlohmann::json;
using Operation = std::pair<std::string, std::string>;  // {"GET", "/v1/runs/{id}"}

const std::vector<std::string>& OpenApiMethods() {
  static const std::vector<std::string> kMethods = {"get",     "put",  "post",  "delete",
                                                    "options", "head", "patch", "trace"};
  return kMethods;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// A router pattern as an OpenAPI path: a greedy "{name+}" is "{name}" there (its description
// says that it may contain '/'); "{id}:approve" is already a literal suffix in both.
std::string PatternToPath(std::string pattern) {
  for (size_t pos; (pos = pattern.find("+}")) != std::string::npos;) pattern.erase(pos, 1);
  return pattern;
}

// Every route `sandboxd serve` registers, as serve_main.cc adds them. The handlers capture the
// context but nothing dereferences it until a request is routed to them.
Router ServeRouter() {
  Router router;
  Status runs = AddRunRoutes(router, RouteContext{});
  EXPECT_TRUE(runs.ok()) << runs.error().ToString();
  Status sandboxes = AddSandboxRoutes(router, SandboxRouteContext{});
  EXPECT_TRUE(sandboxes.ok()) << sandboxes.error().ToString();
  Status openapi = AddOpenApiRoute(router);
  EXPECT_TRUE(openapi.ok()) << openapi.error().ToString();
  Status metrics = AddMetricsRoute(router, nullptr, /*require_key=*/false);
  EXPECT_TRUE(metrics.ok()) << metrics.error().ToString();
  return router;
}

Json Document() {
  auto doc = OpenApiDocument();
  EXPECT_TRUE(doc.ok()) << doc.error().ToString();
  return doc.ok() ? *doc : Json::object();
}

std::map<Operation, const Json*> DocumentOperations(const Json& doc) {
  std::map<Operation, const Json*> out;
  if (!doc.contains("paths") || !doc["paths"].is_object()) return out;
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const std::string& m : OpenApiMethods()) {
      if (item.contains(m)) out[{Upper(m), path}] = &item[m];
    }
  }
  return out;
}

std::string List(const std::set<Operation>& ops) {
  std::string s;
  for (const auto& [method, path] : ops) s += "\n  " + method + " " + path;
  return s;
}

// A local "#/…" reference, or null when it does not resolve.
const Json* Resolve(const Json& doc, const std::string& ref) {
  if (!ref.starts_with("#/")) return nullptr;
  try {
    Json::json_pointer ptr(ref.substr(1));
    return doc.contains(ptr) ? &doc.at(ptr) : nullptr;
  } catch (const Json::exception&) {
    return nullptr;
  }
}

const Json& Deref(const Json& doc, const Json& node) {
  if (node.is_object() && node.contains("$ref") && node["$ref"].is_string()) {
    if (const Json* target = Resolve(doc, node["$ref"].get<std::string>())) return *target;
  }
  return node;
}

void CollectRefs(const Json& node, const std::string& where,
                 std::vector<std::pair<std::string, std::string>>* refs) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if (key == "$ref" && value.is_string()) {
        refs->push_back({where, value.get<std::string>()});
      } else {
        CollectRefs(value, where + "/" + key, refs);
      }
    }
  } else if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i)
      CollectRefs(node[i], where + "/" + std::to_string(i), refs);
  }
}

TEST(ServeOpenApiTest, DocumentConvertsWithOpenapiInfoAndPaths) {
  auto doc = OpenApiDocument();
  ASSERT_TRUE(doc.ok()) << doc.error().ToString();
  ASSERT_TRUE(doc->is_object());
  EXPECT_EQ(doc->value("openapi", ""), "3.0.3");
  ASSERT_TRUE(doc->contains("info") && (*doc)["info"].is_object());
  EXPECT_TRUE((*doc)["info"]["title"].is_string());
  EXPECT_TRUE((*doc)["info"]["version"].is_string());
  ASSERT_TRUE(doc->contains("paths") && (*doc)["paths"].is_object());
  EXPECT_FALSE((*doc)["paths"].empty());
  // Typed as YAML 1.2 reads it: response codes are keys (strings), flags are booleans, bounds
  // are integers.
  const Json& runs = (*doc)["paths"]["/v1/runs"];
  EXPECT_TRUE(runs["post"]["responses"].contains("201"));
  EXPECT_EQ(runs["post"]["requestBody"]["required"], Json(true));
  const Json& limit = runs["get"]["parameters"][3];
  EXPECT_EQ(limit["name"], "limit");
  EXPECT_EQ(limit["schema"]["maximum"], Json(1000));
  EXPECT_TRUE(limit["schema"]["maximum"].is_number_integer());
}

TEST(ServeOpenApiTest, RoutesAndDocumentAgree) {
  Router router = ServeRouter();
  std::set<Operation> served;
  for (const Route& r : router.routes())
    served.insert({MethodName(r.method), PatternToPath(r.pattern)});
  std::set<Operation> documented;
  for (const auto& [op, _] : DocumentOperations(Document())) documented.insert(op);

  std::set<Operation> undocumented, unserved;
  for (const auto& op : served) {
    if (!documented.count(op)) undocumented.insert(op);
  }
  for (const auto& op : documented) {
    if (!served.count(op)) unserved.insert(op);
  }
  EXPECT_TRUE(undocumented.empty())
      << "served but not in api/v1/openapi.yaml:" << List(undocumented);
  EXPECT_TRUE(unserved.empty()) << "in api/v1/openapi.yaml but not served:" << List(unserved);
}

TEST(ServeOpenApiTest, RolesAndWebSocketsAgree) {
  Router router = ServeRouter();
  Json doc = Document();
  auto ops = DocumentOperations(doc);
  for (const Route& r : router.routes()) {
    Operation key{MethodName(r.method), PatternToPath(r.pattern)};
    auto it = ops.find(key);
    if (it == ops.end()) continue;  // reported by RoutesAndDocumentAgree
    const Json& op = *it->second;
    SCOPED_TRACE(key.first + " " + key.second);
    EXPECT_EQ(op.value("x-required-role", ""), AccessName(r.access));
    bool switches = op.contains("responses") && op["responses"].contains("101");
    EXPECT_EQ(switches, r.websocket) << "a WebSocket route answers 101, and only it";
    EXPECT_EQ(op.contains("x-websocket"), r.websocket);
  }
}

TEST(ServeOpenApiTest, EveryOperationAnswersAndNamesItsRole) {
  Json doc = Document();
  const std::set<std::string> kRoles = {"public", "submitter", "reviewer", "admin"};
  bool global_security =
      doc.contains("security") && doc["security"].is_array() && !doc["security"].empty();
  auto ops = DocumentOperations(doc);
  ASSERT_FALSE(ops.empty());
  for (const auto& [key, op] : ops) {
    SCOPED_TRACE(key.first + " " + key.second);
    ASSERT_TRUE(op->is_object());
    ASSERT_TRUE(op->contains("responses") && (*op)["responses"].is_object());
    EXPECT_FALSE((*op)["responses"].empty());
    for (const auto& [status, response] : (*op)["responses"].items()) {
      EXPECT_TRUE(Deref(doc, response).contains("description")) << status;
    }
    std::string role = op->value("x-required-role", "");
    EXPECT_TRUE(kRoles.count(role)) << "x-required-role '" << role << "'";
    bool own_security = op->contains("security");
    if (role == "public") {
      EXPECT_TRUE(own_security && (*op)["security"] == Json::array())
          << "a public operation says security: []";
    } else {
      EXPECT_TRUE(own_security ? !(*op)["security"].empty() : global_security)
          << "an operation that needs a role needs a key";
      EXPECT_TRUE((*op)["responses"].contains("401"))
          << "an operation that needs a key answers 401";
    }
  }
}

TEST(ServeOpenApiTest, PathParametersAreDeclared) {
  Json doc = Document();
  for (const auto& [key, op] : DocumentOperations(doc)) {
    SCOPED_TRACE(key.first + " " + key.second);
    std::set<std::string> in_template;
    const std::string& path = key.second;
    for (size_t open = path.find('{'); open != std::string::npos; open = path.find('{', open + 1)) {
      in_template.insert(path.substr(open + 1, path.find('}', open) - open - 1));
    }
    std::set<std::string> declared;
    std::vector<const Json*> params;
    const Json* item = &doc["paths"][path];
    for (const Json* holder : {item, op}) {
      if (holder->contains("parameters")) {
        for (const Json& p : (*holder)["parameters"]) params.push_back(&Deref(doc, p));
      }
    }
    for (const Json* p : params) {
      if (p->value("in", "") != "path") continue;
      declared.insert(p->value("name", ""));
      EXPECT_EQ(p->value("required", false), true) << p->value("name", "");
    }
    EXPECT_EQ(in_template, declared);
  }
}

TEST(ServeOpenApiTest, EveryRefResolves) {
  Json doc = Document();
  std::vector<std::pair<std::string, std::string>> refs;
  CollectRefs(doc, "", &refs);
  EXPECT_FALSE(refs.empty());
  for (const auto& [where, ref] : refs) {
    EXPECT_NE(Resolve(doc, ref), nullptr) << where << ": $ref '" << ref << "' does not resolve";
  }
}

TEST(ServeOpenApiTest, ServedWithoutAKeyAsJson) {
  auto doc = OpenApiDocument();
  ASSERT_TRUE(doc.ok()) << doc.error().ToString();
  ServerOptions so;
  so.listen = {"127.0.0.1:0"};
  so.io_threads = 1;
  so.worker_threads = 1;
  auto server = Server::Start(so, ServeRouter(), Authenticator());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  uint16_t port = (*server)->addresses()[0].port;

  auto c = RawConn::Tcp(port);
  ASSERT_TRUE(c.has_value());
  auto reply = RoundTrip(*c, MakeRequest("GET", "/v1/openapi.json"));
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->Header("Content-Type"), "application/json");
  Json served = Json::parse(reply->body, nullptr, false);
  ASSERT_FALSE(served.is_discarded()) << "not JSON: " << reply->body.substr(0, 200);
  EXPECT_EQ(served, *doc);

  // The document is public; the routes it describes are not.
  reply = RoundTrip(*c, MakeRequest("GET", "/v1/info"));
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 401);
  (*server)->Stop(std::chrono::seconds(2));
}

// ---- the YAML to JSON conversion ----

Json Convert(std::string_view yaml) {
  auto j = YamlToJson(yaml, "test.yaml");
  EXPECT_TRUE(j.ok()) << yaml << ": " << j.error().ToString();
  return j.ok() ? *j : Json();
}

std::string ConvertError(std::string_view yaml) {
  auto j = YamlToJson(yaml, "test.yaml");
  EXPECT_FALSE(j.ok()) << yaml << " converted to " << (j.ok() ? j->dump() : "");
  return j.ok() ? "" : j.error().message;
}

TEST(ServeOpenApiTest, YamlScalarsAreTypedAsYaml12CoreSchema) {
  Json j = Convert(
      "int: 42\nneg: -7\nhex: 0x1F\nfloat: 1.5\nexp: 2.5e+3\ndot: .5\nt: true\nf: False\n"
      "n: null\ntilde: ~\nempty:\nqint: \"42\"\nsint: '3'\nqbool: \"true\"\nqnull: 'null'\n"
      "version: 3.0.3\nblock: |\n  text\nstr: !!str 12\ntint: !!int \"12\"\ntfloat: !!float 2\n"
      "tbool: !!bool true\ntnull: !!null ''\nsnull: !!str null\n200: ok\n");
  EXPECT_EQ(j["int"], Json(42));
  EXPECT_TRUE(j["int"].is_number_integer());
  EXPECT_EQ(j["neg"], Json(-7));
  EXPECT_EQ(j["hex"], Json(31));
  EXPECT_EQ(j["float"], Json(1.5));
  EXPECT_TRUE(j["float"].is_number_float());
  EXPECT_EQ(j["exp"], Json(2500.0));
  EXPECT_EQ(j["dot"], Json(0.5));
  EXPECT_EQ(j["t"], Json(true));
  EXPECT_EQ(j["f"], Json(false));
  EXPECT_TRUE(j["n"].is_null());
  EXPECT_TRUE(j["tilde"].is_null());
  EXPECT_TRUE(j["empty"].is_null());
  EXPECT_EQ(j["qint"], Json("42"));
  EXPECT_EQ(j["sint"], Json("3"));
  EXPECT_EQ(j["qbool"], Json("true"));
  EXPECT_EQ(j["qnull"], Json("null"));
  EXPECT_EQ(j["version"], Json("3.0.3"));
  EXPECT_EQ(j["block"], Json("text\n"));
  EXPECT_EQ(j["str"], Json("12"));
  EXPECT_EQ(j["tint"], Json(12));
  EXPECT_EQ(j["tfloat"], Json(2.0));
  EXPECT_TRUE(j["tfloat"].is_number_float());
  EXPECT_EQ(j["tbool"], Json(true));
  EXPECT_TRUE(j["tnull"].is_null());
  EXPECT_EQ(j["snull"], Json("null"));
  EXPECT_EQ(j["200"], Json("ok")) << "keys are strings";
  EXPECT_EQ(Convert("- [1, \"1\", {a: b}]\n- &x {k: 1}\n- *x\n"),
            Json::parse(R"([[1, "1", {"a": "b"}], {"k": 1}, {"k": 1}])"));
  EXPECT_EQ(Convert("big: 9223372036854775807\nsmall: -9223372036854775808\n"),
            Json::parse(R"({"big": 9223372036854775807, "small": -9223372036854775808})"));
}

TEST(ServeOpenApiTest, YamlThatReadsDifferentlyElsewhereIsRefused) {
  for (const char* yaml : {"a: yes", "a: off", "a: 010", "a: 1_000", "a: 1:30", "a: 0b101",
                           "a: 0o17", "a: 2024-01-31", "a: 1e3", "a: 1.5e3"}) {
    EXPECT_NE(ConvertError(yaml).find("quote it"), std::string::npos) << yaml;
  }
  EXPECT_NE(ConvertError("a: .inf").find("no JSON form"), std::string::npos);
  EXPECT_NE(ConvertError("a: 9223372036854775808").find("int64"), std::string::npos);
  EXPECT_NE(ConvertError("a: !custom x").find("unsupported tag"), std::string::npos);
  EXPECT_NE(ConvertError("a: !!int x").find("!!int"), std::string::npos);
  EXPECT_NE(ConvertError("a: 1\nb: 2\na: 3\n").find("test.yaml:3: at /: duplicate key 'a'"),
            std::string::npos);
  EXPECT_NE(ConvertError("? [1, 2]\n: x\n").find("must be a scalar"), std::string::npos);
  EXPECT_NE(ConvertError("base: &b {x: 1}\nd:\n  <<: *b\n").find("merge keys"), std::string::npos);
  EXPECT_NE(ConvertError("a: 1\n---\nb: 2\n").find("one YAML document"), std::string::npos);
  EXPECT_NE(ConvertError("a: [1, 2").find("test.yaml"), std::string::npos) << "malformed YAML";
  EXPECT_NE(ConvertError("x:\n  y:\n    - z: yes\n").find("at /x/y/0/z"), std::string::npos);
  // Quoted, they are strings.
  EXPECT_EQ(Convert("a: 'yes'\nb: \"010\"\nc: '1e3'\n"),
            Json::parse(R"({"a": "yes", "b": "010", "c": "1e3"})"));
}

}  // namespace
}  // namespace sbx::api
