#include "data/synthetic.hpp"

#include <random>

namespace llmft::data {

namespace {

struct Pair {
  const char* a;
  const char* b;
};

const Pair kCapitals[] = {
    {"France", "Paris"},     {"Germany", "Berlin"},     {"Italy", "Rome"},         {"Spain", "Madrid"},
    {"Portugal", "Lisbon"},  {"Japan", "Tokyo"},        {"China", "Beijing"},      {"India", "New Delhi"},
    {"Egypt", "Cairo"},      {"Kenya", "Nairobi"},      {"Peru", "Lima"},          {"Chile", "Santiago"},
    {"Canada", "Ottawa"},    {"Mexico", "Mexico City"}, {"Norway", "Oslo"},        {"Sweden", "Stockholm"},
    {"Finland", "Helsinki"}, {"Poland", "Warsaw"},      {"Greece", "Athens"},      {"Turkey", "Ankara"},
    {"Russia", "Moscow"},    {"Ireland", "Dublin"},     {"Austria", "Vienna"},     {"Hungary", "Budapest"},
    {"Cuba", "Havana"},      {"Thailand", "Bangkok"},   {"Vietnam", "Hanoi"},      {"Iran", "Tehran"},
    {"Iraq", "Baghdad"},     {"Nigeria", "Abuja"},      {"Ghana", "Accra"},        {"Morocco", "Rabat"},
    {"Argentina", "Buenos Aires"}, {"Colombia", "Bogota"}, {"Belgium", "Brussels"}, {"Denmark", "Copenhagen"}};

const Pair kOpposites[] = {
    {"hot", "cold"},    {"big", "small"},  {"fast", "slow"},   {"up", "down"},       {"happy", "sad"},
    {"light", "dark"},  {"early", "late"}, {"open", "closed"}, {"full", "empty"},    {"young", "old"},
    {"hard", "soft"},   {"wet", "dry"},    {"loud", "quiet"},  {"strong", "weak"},   {"rich", "poor"},
    {"thick", "thin"},  {"high", "low"},   {"clean", "dirty"}, {"cheap", "expensive"}, {"first", "last"},
    {"near", "far"},    {"new", "used"},   {"safe", "dangerous"}, {"sweet", "sour"}, {"true", "false"}};

const Pair kPlurals[] = {
    {"cat", "cats"},       {"dog", "dogs"},       {"child", "children"}, {"mouse", "mice"},  {"box", "boxes"},
    {"city", "cities"},    {"leaf", "leaves"},    {"foot", "feet"},      {"tooth", "teeth"}, {"person", "people"},
    {"man", "men"},        {"woman", "women"},    {"bus", "buses"},      {"knife", "knives"}, {"baby", "babies"},
    {"goose", "geese"},    {"wolf", "wolves"},    {"story", "stories"},  {"glass", "glasses"}, {"fish", "fish"}};

const Pair kColours[] = {
    {"the sky on a clear day", "blue"}, {"grass", "green"},   {"a banana", "yellow"}, {"snow", "white"},
    {"coal", "black"},                  {"a tomato", "red"},  {"an orange", "orange"}, {"a lemon", "yellow"},
    {"a strawberry", "red"},            {"milk", "white"},    {"a carrot", "orange"}, {"the sea", "blue"},
    {"a crow", "black"},                {"a lime", "green"},  {"chocolate", "brown"},  {"a plum", "purple"}};

// Phrasings of each family: {instruction template, answer template}; {A} and {B} are replaced.
struct Family {
  std::vector<std::pair<const char*, const char*>> phrasings;
};

std::string fill(std::string t, const std::string& a, const std::string& b) {
  for (size_t p; (p = t.find("{A}")) != std::string::npos;) t.replace(p, 3, a);
  for (size_t p; (p = t.find("{B}")) != std::string::npos;) t.replace(p, 3, b);
  return t;
}

}  // namespace

std::vector<InstructionRecord> synthetic_instructions(int64_t count, uint64_t seed) {
  const Family capitals{{{"What is the capital of {A}?", "The capital of {A} is {B}."},
                         {"Name the capital city of {A}.", "The capital of {A} is {B}."},
                         {"Which city is the capital of {A}?", "The capital of {A} is {B}."}}};
  const Family opposites{{{"What is the opposite of \"{A}\"?", "The opposite of {A} is {B}."},
                          {"Give the antonym of the word \"{A}\".", "The opposite of {A} is {B}."},
                          {"What word means the opposite of \"{A}\"?", "The opposite of {A} is {B}."}}};
  const Family plurals{{{"What is the plural of \"{A}\"?", "The plural of {A} is {B}."},
                        {"Write the plural form of \"{A}\".", "The plural of {A} is {B}."},
                        {"How do you say more than one \"{A}\"?", "The plural of {A} is {B}."}}};
  const Family colours{{{"What colour is {A}?", "The colour of {A} is {B}."},
                        {"Tell me the colour of {A}.", "The colour of {A} is {B}."},
                        {"Which colour does {A} have?", "The colour of {A} is {B}."}}};
  std::mt19937_64 rng(seed);
  std::vector<InstructionRecord> out;
  out.reserve(static_cast<size_t>(count));
  while (static_cast<int64_t>(out.size()) < count) {
    int kind = static_cast<int>(rng() % 6);
    auto pick = [&](const Family& f, const Pair* pairs, size_t n) {
      const Pair& p = pairs[rng() % n];
      const auto& ph = f.phrasings[rng() % f.phrasings.size()];
      out.push_back({fill(ph.first, p.a, p.b), "", fill(ph.second, p.a, p.b)});
    };
    switch (kind) {
      case 0: pick(capitals, kCapitals, std::size(kCapitals)); break;
      case 1: pick(opposites, kOpposites, std::size(kOpposites)); break;
      case 2: pick(plurals, kPlurals, std::size(kPlurals)); break;
      case 3: pick(colours, kColours, std::size(kColours)); break;
      case 4: {
        int a = static_cast<int>(rng() % 10), b = static_cast<int>(rng() % 10);
        out.push_back({"Add the two numbers.", std::to_string(a) + " and " + std::to_string(b),
                       std::to_string(a) + " plus " + std::to_string(b) + " is " + std::to_string(a + b) + "."});
        break;
      }
      default: {
        int a = static_cast<int>(rng() % 10);
        std::string s;
        for (int i = 0; i < 4; ++i) s += (i ? ", " : "") + std::to_string(a + i);
        out.push_back({"Count up from " + std::to_string(a) + ".", "", s + "."});
        break;
      }
    }
  }
  return out;
}

}  // namespace llmft::data
