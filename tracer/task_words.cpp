#include "tracer/task_words.hpp"

namespace kvsim {

namespace {

// Each list is sorted and has no repeats; a word may be on two lists (an adjective and a noun).
constexpr std::string_view kAdjectives[] = {
    "able", "active", "afraid", "amber", "ancient", "angry", "bitter", "black", "bold", "brave", "bright", "broad",
    "brown", "busy", "calm", "careful", "cheap", "chilly", "clean", "clever", "cold", "cool", "crisp", "cruel",
    "curious", "damp", "dark", "deep", "dense", "dizzy", "dry", "dull", "eager", "early", "easy", "empty", "equal",
    "exact", "faint", "fair", "false", "famous", "fast", "fierce", "flat", "fresh", "friendly", "funny", "gentle",
    "giant", "glad", "golden", "good", "grand", "gray", "great", "green", "happy", "hard", "heavy", "hidden",
    "hollow", "honest", "huge", "humble", "hungry", "icy", "jolly", "keen", "kind", "large", "late", "lazy",
    "light", "little", "lively", "lonely", "long", "loud", "lucky", "mellow", "mighty", "modest", "narrow", "neat",
    "noble", "odd", "old", "orange", "pale", "patient", "plain", "polite", "poor", "proud", "purple", "quick",
    "quiet", "rapid", "rare", "raw", "red", "rich", "rough", "round", "royal", "rural", "rusty", "sad", "safe",
    "salty", "scarlet", "shallow", "sharp", "shiny", "short", "shy", "silent", "silly", "silver", "simple", "slow",
    "small", "smooth", "soft", "solid", "sour", "spare", "steady", "steep", "sticky", "stiff", "strange", "strict",
    "strong", "sunny", "sweet", "swift", "tall", "tame", "tender", "thick", "thin", "tidy", "tiny", "tough",
    "upper", "vast", "violet", "vivid", "warm", "weak", "wet", "white", "wide", "wild", "wise", "witty", "wooden",
    "yellow", "young",
};

constexpr std::string_view kNouns[] = {
    "acorn", "anchor", "apple", "arrow", "attic", "badge", "bakery", "balloon", "banjo", "barn", "basket", "beach",
    "beacon", "bell", "bench", "berry", "bicycle", "blanket", "boat", "bottle", "bridge", "brook", "bucket",
    "butter", "button", "cabin", "cactus", "camera", "candle", "canoe", "canyon", "carpet", "castle", "cattle",
    "cellar", "chair", "cherry", "chimney", "circus", "cliff", "clock", "cloud", "coat", "comet", "compass",
    "cookie", "copper", "cottage", "crayon", "creek", "crown", "cup", "curtain", "daisy", "desert", "diamond",
    "dolphin", "door", "dragon", "drum", "eagle", "engine", "falcon", "feather", "fence", "ferry", "field", "flag",
    "flute", "forest", "fountain", "fox", "garden", "gate", "glacier", "glove", "goat", "grape", "guitar",
    "hammer", "harbor", "harp", "hat", "hawk", "helmet", "hill", "honey", "horse", "island", "jacket", "jar",
    "jungle", "kettle", "key", "kitten", "ladder", "lake", "lamp", "lantern", "leaf", "lemon", "library", "lily",
    "lion", "lizard", "magnet", "maple", "market", "meadow", "mirror", "mitten", "monkey", "moon", "mountain",
    "mushroom", "needle", "nest", "ocean", "olive", "orchard", "otter", "owl", "paddle", "palace", "panda",
    "parrot", "peach", "pebble", "pencil", "pepper", "piano", "pillow", "planet", "plum", "pocket", "pond",
    "puzzle", "quilt", "rabbit", "radio", "raven", "ribbon", "river", "robin", "rocket", "saddle", "sail",
    "sandal", "school", "shell", "ship", "shovel", "skate", "sled", "snail", "spoon", "squirrel", "stable", "star",
    "statue", "stone", "storm", "stove", "sugar", "swan", "table", "teapot", "temple", "tiger", "tomato", "tower",
    "tractor", "train", "tulip", "tunnel", "turtle", "umbrella", "valley", "violin", "wagon", "wallet", "walrus",
    "whale", "whistle", "window", "wizard", "wolf", "yacht", "zebra",
};

constexpr std::string_view kVerbs[] = {
    "accept", "achieve", "admire", "advise", "agree", "allow", "answer", "appear", "arrive", "attach", "bake",
    "balance", "bathe", "begin", "believe", "bounce", "breathe", "build", "calculate", "carry", "celebrate",
    "change", "chase", "cheer", "choose", "clap", "climb", "collect", "compare", "complain", "connect", "consider",
    "cook", "count", "cover", "crawl", "cross", "dance", "decide", "deliver", "describe", "design", "discover",
    "divide", "dream", "drift", "earn", "enjoy", "escape", "examine", "explain", "explore", "fetch", "finish",
    "float", "fold", "follow", "gather", "giggle", "glow", "guess", "hammer", "handle", "hang", "harvest", "hope",
    "hover", "hurry", "imagine", "improve", "invent", "invite", "join", "juggle", "jump", "knit", "knock", "laugh",
    "launch", "learn", "listen", "march", "measure", "melt", "mend", "navigate", "notice", "obey", "offer", "open",
    "order", "paint", "pause", "plant", "play", "polish", "pour", "practice", "pray", "prefer", "prepare",
    "promise", "protect", "pull", "punch", "push", "quarrel", "question", "race", "reach", "realize", "relax",
    "remember", "repair", "repeat", "reply", "rescue", "rest", "return", "roll", "rush", "scatter", "search",
    "settle", "shiver", "signal", "sing", "skip", "sleep", "slide", "smile", "sneeze", "solve", "sparkle", "spell",
    "splash", "squeeze", "stir", "stretch", "study", "suggest", "supply", "surprise", "swim", "switch", "talk",
    "taste", "teach", "tickle", "travel", "trust", "tumble", "unlock", "unpack", "vanish", "visit", "wander",
    "wash", "watch", "wave", "whisper", "wiggle", "wink", "wonder", "worry", "wrap", "yawn", "yell", "zoom",
};

}  // namespace

std::span<const std::string_view> task_adjectives() { return kAdjectives; }
std::span<const std::string_view> task_nouns() { return kNouns; }
std::span<const std::string_view> task_verbs() { return kVerbs; }

}  // namespace kvsim
